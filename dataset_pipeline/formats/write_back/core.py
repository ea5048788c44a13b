"""Write-back: a robot dataset's frames' class maps, and the augmented copy its own library writes.

:func:`episode_masks` paints each source frame's class map from the annotations (one annotator
per image, :func:`~dataset_pipeline.baseline_model.reference_annotations`), with a per-frame
flag of where it came from (``none`` for a frame nobody labelled: never read it as background).
:func:`write_back` has the format write an augmented copy - LeRobot and RLDS through their own
libraries in their own environments (``robot_workers/``), HDF5 with h5py - and
:func:`check_write_back` reads it back with the same library. The CLI's ``write-back`` and the
release's ``write_back`` format both call these.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dataset_pipeline.formats.robot_dataset import (
    MASK_SOURCES,
    Launcher,
    RobotDatasetError,
    RobotSource,
    mask_file,
)

if TYPE_CHECKING:
    import pandas as pd


def mask_source(assistance: object, review_status: object) -> int:
    """The per-frame flag code (:data:`MASK_SOURCES`) of the annotation that labels a frame.

    >>> mask_source("manual", "expert_approved"), mask_source("auto", "unreviewed")
    (1, 3)
    """
    if assistance == "propagated":
        return MASK_SOURCES.index("propagated")
    if assistance == "auto" and review_status in (None, "", "unreviewed"):
        return MASK_SOURCES.index("model")
    return MASK_SOURCES.index("human")


@dataclass
class EpisodeMasks:
    """Per (episode, camera): the labelled frames' class maps, and every frame's flag.

    Only labelled frames are held (memory follows the labels, not the dataset); :meth:`save`
    writes each episode's full (T, H, W) maps - zeros where unlabelled - one episode at a time.
    """

    shapes: dict[str, tuple[int, int]]
    masks: dict[tuple[int, str], dict[int, np.ndarray]]
    sources: dict[tuple[int, str], np.ndarray]

    @property
    def labelled_frames(self) -> int:
        return int(sum(int((s > 0).sum()) for s in self.sources.values()))

    def save(self, folder: Path) -> dict[str, str]:
        """Write the files the workers read (``episode_<e>_<camera>.npz``: masks, sources); returns
        them by ``"<episode>:<camera>"``, as a request's ``mask_files``."""
        folder.mkdir(parents=True, exist_ok=True)
        files: dict[str, str] = {}
        for key, frames in self.masks.items():
            height, width = self.shapes[key[1]]
            full = np.zeros((len(self.sources[key]), height, width), np.uint8)
            for index, classes in frames.items():
                full[index] = classes
            files[f"{key[0]}:{key[1]}"] = mask_file(key[0], key[1])
            np.savez(folder / files[f"{key[0]}:{key[1]}"], masks=full, sources=self.sources[key])
        return files


def episode_masks(
    source: RobotSource,
    captures: pd.DataFrame,
    annotations: pd.DataFrame,
    *,
    reviewed: Sequence[str] = (),
) -> EpisodeMasks:
    """Paint each labelled frame's class map, aligned by the source's episode and frame index.

    ``captures`` need ``image_id``, ``camera_model``, ``frame_index`` and ``source_episode``
    (as raw_captures writes them for a robot batch); ``annotations`` are the annotation table
    (one annotator per image is kept). ``reviewed`` images count as labelled even without an
    instance (reviewed and found empty: background, flagged human). An annotated image that is
    no frame of ``source``, or whose size differs from the camera's, is refused naming the image
    and the field.
    """
    from dataset_pipeline.baseline_model import reference_annotations
    from dataset_pipeline.masks import decode_mask_box, paint_class_map, rle_boxes

    frames = captures.drop_duplicates("image_id").set_index("image_id")
    lengths = {e.index: e.length for e in source.episodes}
    out = EpisodeMasks({c: tuple(s) for c, s in source.frame_shapes.items()}, {}, {})  # type: ignore[misc]
    chosen = reference_annotations(annotations) if len(annotations) else annotations
    by_image = dict(tuple(chosen.groupby("image_id", sort=True))) if len(chosen) else {}
    for image_id in sorted(set(by_image) | set(reviewed)):
        if image_id not in frames.index:
            raise RobotDatasetError(
                f"annotations: image {image_id!r} (field 'image_id') is no frame of this batch"
            )
        frame = frames.loc[image_id]
        camera, episode, index = str(frame.camera_model), frame.source_episode, int(frame.frame_index)
        if episode is None or _isna(episode) or int(episode) not in lengths:
            raise RobotDatasetError(
                f"captures: image {image_id!r}: field 'source_episode' ({episode!r}) is no episode of the dataset"
            )
        episode = int(episode)
        if camera not in source.cameras:
            raise RobotDatasetError(
                f"captures: image {image_id!r}: camera {camera!r} is not one of the dataset's"
            )
        rows = by_image.get(image_id)
        if rows is not None:
            height, width = int(rows.height.iloc[0]), int(rows.width.iloc[0])
            out.shapes.setdefault(camera, (height, width))
            if (height, width) != tuple(out.shapes[camera]):
                raise RobotDatasetError(
                    f"annotations: image {image_id!r}: fields height/width {height}x{width} differ from camera "
                    f"{camera}'s {out.shapes[camera][0]}x{out.shapes[camera][1]}"
                )
        if camera not in out.shapes:
            raise RobotDatasetError(f"camera {camera!r}: the dataset gives no frame size")
        if not 0 <= index < lengths[episode]:
            raise RobotDatasetError(
                f"captures: image {image_id!r}: frame_index {index} is outside episode {episode}"
            )
        height, width = out.shapes[camera]
        key = (episode, camera)
        if key not in out.masks:
            out.masks[key] = {}
            out.sources[key] = np.zeros(lengths[episode], np.uint8)
        if rows is None:  # reviewed and empty: background everywhere, which save() writes
            out.sources[key][index] = MASK_SOURCES.index("human")
            continue
        boxes = rle_boxes(rows.height, rows.width, rows.rle)
        masks = [decode_mask_box(r, height, width, tuple(b)) for r, b in zip(rows.rle, boxes, strict=True)]
        out.masks[key][index] = paint_class_map(
            masks, boxes, rows.class_id.to_numpy(), rows.z_order.to_numpy(), height, width
        )
        out.sources[key][index] = max(
            mask_source(a, s) for a, s in zip(rows.assistance, rows.review_status, strict=True)
        )
    # Only the cameras that hold labels get a segmentation feature.
    labelled = {camera for _, camera in out.masks}
    out.shapes = {c: s for c, s in out.shapes.items() if c in labelled} or {
        c: s for c, s in list(out.shapes.items())[:1]
    }
    return out


def _isna(value: object) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


@dataclass
class WriteBack:
    kind: str
    directory: Path
    episodes: int
    frames: int
    labelled_frames: int
    seconds: float
    details: dict = field(default_factory=dict)


@contextlib.contextmanager
def _saved(masks: EpisodeMasks) -> Iterator[dict]:
    """The class maps saved for a worker, as the part of its request that names them."""
    with tempfile.TemporaryDirectory(prefix="dp-masks-") as folder:
        shapes = {c: list(s) for c, s in masks.shapes.items()}
        yield {"shapes": shapes, "masks": folder, "mask_files": masks.save(Path(folder))}


def repo_id_of(batch: str) -> str:
    return f"dataset_pipeline/{batch}"


def write_back(
    root: Path,
    source: RobotSource,
    masks: EpisodeMasks,
    out: Path,
    *,
    batch: str,
    class_names: Sequence[str] = (),
    launcher: Launcher | None = None,
) -> WriteBack:
    """Write the augmented copy of the dataset at ``root`` into ``out`` (a new folder)."""
    from dataset_pipeline.formats.environments import run_worker

    started = time.perf_counter()
    with _saved(masks) as saved:
        if source.kind == "lerobot":
            answer = run_worker(
                "lerobot",
                "write-back",
                {
                    "root": str(root),
                    "repo_id": repo_id_of(batch),
                    **saved,
                    "out": str(out),
                    "class_names": list(class_names),
                },
                launcher=launcher,
            )
            directory, frames = out, int(answer["frames"])
        elif source.kind == "rlds":
            from dataset_pipeline.formats.rlds.source import directory as tfds_directory

            answer = run_worker(
                "tfds",
                "write-back",
                {
                    "root": str(tfds_directory(root)),
                    **saved,
                    "out": str(out),
                },
                launcher=launcher,
            )
            directory, frames = Path(answer["directory"]), int(answer["steps"])
        else:
            from dataset_pipeline.formats.episode_hdf5.write_back import write_back as hdf5_write_back

            answer = hdf5_write_back(
                root,
                Path(saved["masks"]),
                saved["mask_files"],
                saved["shapes"],
                out,
                class_names=list(class_names),
            )
            directory, frames = out, int(answer["frames"])
    return WriteBack(
        source.kind,
        directory,
        len(source.episodes),
        frames,
        masks.labelled_frames,
        time.perf_counter() - started,
        answer,
    )


def check_write_back(
    root: Path,
    source: RobotSource,
    masks: EpisodeMasks,
    written: WriteBack,
    *,
    batch: str,
    launcher: Launcher | None = None,
) -> list[str]:
    """Read the written copy back with the format's own library; the problems found."""
    from dataset_pipeline.formats.environments import run_worker

    frames = sum(e.length for e in source.episodes)
    with _saved(masks) as saved:
        if source.kind == "lerobot":
            answer = run_worker(
                "lerobot",
                "check",
                {
                    "written": str(written.directory),
                    "source": str(root),
                    "repo_id": repo_id_of(batch),
                    **saved,
                    "frames": frames,
                },
                launcher=launcher,
            )
        elif source.kind == "rlds":
            from dataset_pipeline.formats.rlds.source import directory as tfds_directory

            answer = run_worker(
                "tfds",
                "check",
                {
                    "written": str(written.directory),
                    "source": str(tfds_directory(root)),
                    **saved,
                    "episodes": len(source.episodes),
                },
                launcher=launcher,
            )
        else:
            from dataset_pipeline.formats.episode_hdf5.write_back import check as hdf5_check

            answer = {
                "problems": hdf5_check(
                    root, Path(saved["masks"]), saved["mask_files"], saved["shapes"], written.directory
                )
            }
    return list(answer["problems"])

"""Robot datasets in and out: a LeRobot / RLDS / episode-HDF5 upload becomes frames to label, and
its labels go back into a copy of it.

**In.** A robot dataset's upload is ``incoming/<batch>/`` holding the dataset as its tools
wrote it, and ``UPLOAD_COMPLETE`` (written last; optionally the settings below as JSON).
:func:`ingest_dataset` samples frames (cameras, every N-th frame or a target fps), writes
them losslessly as PNG with a manifest under ``frames/<batch>/`` (``raw_captures`` then reads
them like any upload) and ``source.json``: the dataset's kind, version, robot type, fps,
tasks, the settings, and the episodes it quarantined with the reason. Each frame's manifest
row points back to its source: ``episode_index`` (the source's own), ``frame_index`` (the
source's), ``timestamp`` (seconds in the episode) and ``camera_model`` (the camera key).

**Out.** :func:`write_back` paints each source frame's class map from the annotations (one
annotator per image, :func:`~dataset_pipeline.baseline_model.reference_annotations`), with a
per-frame flag of where it came from (``none`` for a frame nobody labelled: never read it as
background), and has the format write an augmented copy: LeRobot and RLDS through their own
libraries in their own environments (``formats/*/worker.py``), HDF5 with h5py.
:func:`check_write_back` reads it back with the same library.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dataset_pipeline import layout
from dataset_pipeline.formats.robot_dataset import (
    MASK_SOURCES,
    EpisodeError,
    RobotDatasetError,
    RobotSource,
    check_cameras,
    detect,
    sample_frames,
    source_reader,
)
from dataset_pipeline.formats.worker_protocol import Launcher
from dataset_pipeline.store import DatasetStore

if TYPE_CHECKING:
    import pandas as pd

#: Without settings: a target of 2 frames per second where the dataset gives its fps, else every 10th.
DEFAULT_FPS = 2.0
DEFAULT_EVERY = 10
#: Robot datasets do not record the light; the captures' ``lighting`` says so.
UNKNOWN_LIGHTING = "unknown"
MANIFEST_COLUMNS: tuple[str, ...] = (
    "image_file",
    "capture_ts",
    "camera_model",
    "scene_id",
    "lighting",
    "episode_id",
    "frame_index",
    "episode_index",
    "timestamp",
)


@dataclass(frozen=True)
class IngestSettings:
    """Which frames of a robot dataset become captures."""

    cameras: tuple[str, ...] = ()
    every: int | None = None
    fps: float | None = None
    lighting: str = UNKNOWN_LIGHTING

    def __post_init__(self) -> None:
        if self.every is not None and self.fps is not None:
            raise ValueError("sample with either every N-th frame or a target fps, not both")
        if self.every is not None and self.every < 1:
            raise ValueError(f"every must be at least 1, not {self.every}")
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"fps must be positive, not {self.fps}")

    @classmethod
    def from_json(cls, data: bytes, where: str) -> IngestSettings:
        """The settings an ``UPLOAD_COMPLETE`` marker holds (empty: the defaults)."""
        text = data.decode("utf-8", "replace").strip()
        if not text:
            return cls()
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RobotDatasetError(
                f"{where}: not JSON ({exc}); leave it empty or give the settings"
            ) from None
        if not isinstance(values, dict):
            raise RobotDatasetError(f"{where}: not a JSON object")
        unknown = sorted(set(values) - {"cameras", "every", "fps", "lighting"})
        if unknown:
            raise RobotDatasetError(
                f"{where}: unknown field(s) {unknown}; known: cameras, every, fps, lighting"
            )
        try:
            return cls(
                cameras=tuple(str(c) for c in values.get("cameras") or ()),
                every=None if values.get("every") is None else int(values["every"]),
                fps=None if values.get("fps") is None else float(values["fps"]),
                lighting=str(values.get("lighting") or UNKNOWN_LIGHTING),
            )
        except (TypeError, ValueError) as exc:
            raise RobotDatasetError(f"{where}: {exc}") from None

    def to_json(self) -> bytes:
        return json.dumps(
            {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        ).encode()

    def picks(self, source: RobotSource) -> dict[int, list[int]]:
        every, fps = self.every, self.fps
        if every is None and fps is None:
            fps, every = (DEFAULT_FPS, None) if source.fps else (None, DEFAULT_EVERY)
        return {
            e.index: sample_frames(e.length, every=every, fps=fps, source_fps=source.fps)
            for e in source.episodes
        }


@dataclass
class DatasetIngest:
    """What :func:`ingest_dataset` wrote."""

    batch: str
    source: RobotSource
    settings: IngestSettings
    frames_per_episode: dict[int, int]
    quarantined: dict[int, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def frames(self) -> int:
        return sum(self.frames_per_episode.values())


def is_dataset_batch(store: DatasetStore, batch: str) -> bool:
    return store.exists(layout.upload_complete_key(batch))


def find_dataset_batches(store: DatasetStore) -> list[str]:
    """Batches under ``incoming/`` whose robot-dataset upload is complete (marker written)."""
    found = {layout.batch_of_manifest(k) for k in store.glob(layout.DATASET_MARKERS_GLOB)}
    return sorted(b for b in found if layout.is_batch_name(b))


@contextlib.contextmanager
def local_dataset(store: DatasetStore, batch: str) -> Iterator[Path]:
    """The batch's upload as a local folder: the store's own on disk, a downloaded copy from S3."""
    prefix = layout.upload_prefix(batch)
    if store.is_local:
        yield Path(store.path(prefix))
        return
    with tempfile.TemporaryDirectory(prefix="dp-dataset-") as folder:
        for key in store.list(prefix, recursive=True):
            target = Path(folder) / layout.upload_relative(batch, key)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(store.read_bytes(key))
        yield Path(folder)


def describe_upload(root: Path, *, launcher: Launcher | None = None) -> RobotSource:
    kind = detect(root)
    if kind is None:
        raise RobotDatasetError(
            f"{root}: no robot dataset here (LeRobot meta/info.json, RLDS dataset_info.json + "
            "features.json, or .hdf5 episodes)"
        )
    return source_reader(kind).describe(root, launcher=launcher)


def _episode_id(batch: str, episode: int) -> str:
    return f"{batch}/episode_{episode:06d}"


def _png(rgb: np.ndarray) -> bytes:
    import cv2

    ok, encoded = cv2.imencode(
        ".png", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 1]
    )
    if not ok:
        raise RobotDatasetError("a frame could not be encoded as PNG")
    return encoded.tobytes()


def ingest_dataset(
    store: DatasetStore,
    batch: str,
    settings: IngestSettings | None = None,
    *,
    root: Path | None = None,
    started_at: datetime.datetime | None = None,
    launcher: Launcher | None = None,
) -> DatasetIngest:
    """Sample a robot dataset's frames into ``frames/<batch>/`` (PNG, manifest, ``source.json``).

    ``root`` is the dataset's local folder (default: the batch's upload). Refused whole, before
    anything is written, for unusable metadata, an unknown camera, or a dataset that already
    holds a segmentation (written back before); an episode whose files are missing or broken is
    quarantined (named in ``source.json``), the others go on. The manifest is written last.
    ``capture_ts`` is ``started_at`` (default now) plus each frame's timestamp: robot datasets
    keep time within an episode only.
    """
    started = time.perf_counter()
    layout.check_batch_name(batch)
    if settings is None:
        marker = layout.upload_complete_key(batch)
        settings = (
            IngestSettings.from_json(store.read_bytes(marker), store.url(marker))
            if store.exists(marker)
            else IngestSettings()
        )
    base = started_at or datetime.datetime.now(datetime.UTC)
    with contextlib.ExitStack() as stack:
        folder = root if root is not None else stack.enter_context(local_dataset(store, batch))
        source = describe_upload(folder, launcher=launcher)
        if source.metadata.get("already_segmented"):
            raise RobotDatasetError(
                f"{folder}: the dataset already has a segmentation feature (a written-back copy?); "
                "upload the original"
            )
        cameras = check_cameras(source, settings.cameras)
        picks = settings.picks(source)
        reader = source_reader(source.kind)
        tasks = {e.index: e.task for e in source.episodes}
        rows: list[dict[str, object]] = []
        counts: dict[int, int] = {}
        quarantined: dict[int, str] = {}
        # A reader in another environment reads all episodes in one pass (one process start);
        # the others episode by episode, so a broken episode quarantines itself alone.
        wanted = {e: p for e, p in sorted(picks.items()) if p}
        passes = [wanted] if getattr(reader, "ONE_PASS", False) else [{e: p} for e, p in wanted.items()]
        for group in passes:
            pending: dict[int, list[tuple[str, bytes, dict[str, object]]]] = {e: [] for e in group}
            try:
                for frame in reader.frames(folder, source, group, cameras, launcher=launcher):
                    image_file = layout.frame_image_file(frame.camera, frame.episode_index, frame.frame_index)
                    pending[frame.episode_index].append(
                        (
                            image_file,
                            _png(frame.rgb),
                            {
                                "image_file": image_file,
                                "capture_ts": (
                                    base + datetime.timedelta(seconds=frame.timestamp)
                                ).isoformat(),
                                "camera_model": frame.camera,
                                "scene_id": _scene(source, tasks.get(frame.episode_index, "")),
                                "lighting": settings.lighting,
                                "episode_id": _episode_id(batch, frame.episode_index),
                                "frame_index": frame.frame_index,
                                "episode_index": frame.episode_index,
                                "timestamp": round(frame.timestamp, 6),
                            },
                        )
                    )
            except EpisodeError as exc:
                quarantined[exc.episode_index] = str(exc)
                pending.pop(exc.episode_index, None)
                if len(group) > 1:
                    raise RobotDatasetError(str(exc)) from None
            for episode, items in pending.items():
                for image_file, data, row in items:
                    store.write_bytes(
                        layout.join_key(layout.frames_prefix(batch), image_file), data, durable=False
                    )
                    rows.append(row)
                counts[episode] = len(items)
    import pandas as pd

    store.sync()
    result = DatasetIngest(batch, source, settings, counts, quarantined, time.perf_counter() - started)
    provenance = {
        **source.provenance(),
        "root": layout.upload_prefix(batch),
        "settings": json.loads(settings.to_json()),
        "frames_per_episode": {str(k): v for k, v in counts.items()},
        "quarantined_episodes": {str(k): v for k, v in quarantined.items()},
        "ingested_at": base.isoformat(),
    }
    store.write_bytes(layout.frames_source_key(batch), json.dumps(provenance, indent=2, default=str).encode())
    manifest = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    store.write_bytes(layout.frames_manifest_key(batch), manifest.to_csv(index=False).encode())
    return result


def ensure_sampled(
    store: DatasetStore, batch: str, *, launcher: Launcher | None = None
) -> tuple[DatasetIngest | None, dict]:
    """Sample the batch's dataset unless ``frames/<batch>/`` already holds it sampled with the
    marker's settings (by ``dataset-pipeline ingest``, or an earlier run): then nothing is
    redone, and the captures keep their times. Returns the new ingest (or None) and ``source.json``."""
    marker = layout.upload_complete_key(batch)
    settings = IngestSettings.from_json(store.read_bytes(marker), store.url(marker))
    existing = read_source_json(store, batch)
    if (
        existing is not None
        and existing.get("settings") == json.loads(settings.to_json())
        and store.exists(layout.frames_manifest_key(batch))
    ):
        return None, existing
    result = ingest_dataset(store, batch, settings, launcher=launcher)
    return result, read_source_json(store, batch) or {}


def _scene(source: RobotSource, task: str) -> str:
    """A robot dataset's scene is its task (episodes of one task share a set-up), else the dataset."""
    text = "".join(
        ch if ch.isalnum() else "-" for ch in str(task or source.metadata.get("name") or source.kind).lower()
    )
    return "-".join(part for part in text.split("-") if part)[:80] or source.kind


def read_source_json(store: DatasetStore, batch: str) -> dict | None:
    key = layout.frames_source_key(batch)
    return json.loads(store.read_bytes(key)) if store.exists(key) else None


def copy_into_upload(source_dir: Path, store: DatasetStore, batch: str, settings: IngestSettings) -> int:
    """Copy a local dataset into ``incoming/<batch>/`` (create-only) and write the marker last."""
    copied = 0
    for path in sorted(p for p in source_dir.rglob("*") if p.is_file()):
        relative = path.relative_to(source_dir).as_posix()
        if relative == layout.UPLOAD_COMPLETE_FILE:
            continue
        store.put_upload(layout.upload_file(batch, relative), path.read_bytes())
        copied += 1
    store.put_upload(layout.upload_complete_key(batch), settings.to_json())
    return copied


# -- write-back ------------------------------------------------------------------------------


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
    """Per (episode, camera): every frame's class map (zeros where unlabelled) and flag."""

    shapes: dict[str, tuple[int, int]]
    masks: dict[tuple[int, str], np.ndarray]
    sources: dict[tuple[int, str], np.ndarray]

    @property
    def labelled_frames(self) -> int:
        return int(sum(int((s > 0).sum()) for s in self.sources.values()))

    def save(self, folder: Path) -> None:
        """The files the workers read: ``episode_<e>_<camera>.npz`` (masks, sources)."""
        folder.mkdir(parents=True, exist_ok=True)
        for key, masks in self.masks.items():
            np.savez(folder / f"episode_{key[0]}_{key[1]}.npz", masks=masks, sources=self.sources[key])


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
        if episode is None or pd_isna(episode) or int(episode) not in lengths:
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
            out.masks[key] = np.zeros((lengths[episode], height, width), np.uint8)
            out.sources[key] = np.zeros(lengths[episode], np.uint8)
        if rows is None:
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


def pd_isna(value: object) -> bool:
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


def repo_id_of(source: RobotSource, batch: str) -> str:
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
    shapes = {c: list(s) for c, s in masks.shapes.items()}
    with tempfile.TemporaryDirectory(prefix="dp-masks-") as folder:
        masks.save(Path(folder))
        if source.kind == "lerobot":
            answer = run_worker(
                "lerobot",
                "dataset_pipeline.formats.lerobot.worker",
                "write-back",
                {
                    "root": str(root),
                    "repo_id": repo_id_of(source, batch),
                    "shapes": shapes,
                    "masks": folder,
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
                "dataset_pipeline.formats.rlds.worker",
                "write-back",
                {"root": str(tfds_directory(root)), "shapes": shapes, "masks": folder, "out": str(out)},
                launcher=launcher,
            )
            directory, frames = Path(answer["directory"]), int(answer["steps"])
        else:
            from dataset_pipeline.formats.episode_hdf5.write_back import write_back as hdf5_write_back

            answer = hdf5_write_back(root, Path(folder), shapes, out, class_names=list(class_names))
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

    shapes = {c: list(s) for c, s in masks.shapes.items()}
    frames = sum(e.length for e in source.episodes)
    with tempfile.TemporaryDirectory(prefix="dp-masks-") as folder:
        masks.save(Path(folder))
        if source.kind == "lerobot":
            answer = run_worker(
                "lerobot",
                "dataset_pipeline.formats.lerobot.worker",
                "check",
                {
                    "written": str(written.directory),
                    "source": str(root),
                    "repo_id": repo_id_of(source, batch),
                    "shapes": shapes,
                    "masks": folder,
                    "frames": frames,
                },
                launcher=launcher,
            )
        elif source.kind == "rlds":
            from dataset_pipeline.formats.rlds.source import directory as tfds_directory

            answer = run_worker(
                "tfds",
                "dataset_pipeline.formats.rlds.worker",
                "check",
                {
                    "written": str(written.directory),
                    "source": str(tfds_directory(root)),
                    "shapes": shapes,
                    "masks": folder,
                    "episodes": len(source.episodes),
                },
                launcher=launcher,
            )
        else:
            from dataset_pipeline.formats.episode_hdf5.write_back import check as hdf5_check

            answer = {"problems": hdf5_check(root, Path(folder), shapes, written.directory)}
    return list(answer["problems"])


def frames_per_episode_text(result: DatasetIngest) -> str:
    """The CLI's table: frames taken per episode, and the quarantined episodes with the reason."""
    buffer = io.StringIO()
    for episode, count in sorted(result.frames_per_episode.items()):
        buffer.write(f"  episode {episode}: {count} frames\n")
    for episode, reason in sorted(result.quarantined.items()):
        buffer.write(f"  episode {episode}: quarantined - {reason}\n")
    return buffer.getvalue()

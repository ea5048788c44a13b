"""The release's copy of each robot dataset it was sampled from, with the class maps written in.

Under ``robot_datasets/<batch>/``, for every released batch that came from a LeRobot, RLDS or
episode-HDF5 upload (``frames/<batch>/source.json``): the dataset as
:func:`dataset_pipeline.robot_datasets.write_back` writes it - every original feature,
episode, frame, timestamp and task unchanged, plus a class map and a mask-source flag per
frame (``none`` for frames the release does not label). The labels are the release's own
reference instances, so the copy agrees with every other format. ``validate`` reads each copy
back with the library that wrote it (lerobot's ``LeRobotDataset``, ``tfds.builder_from_directory``,
h5py) and compares it with the class maps and the source.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dataset_pipeline import layout
from dataset_pipeline.formats.exporting import ReleaseFolder
from dataset_pipeline.formats.release_content import ReleaseContent

NAME = "write_back"
ROOT = "robot_datasets"


def _robot_batches(content: ReleaseContent) -> list[str]:
    images = content.images
    if "source_episode" not in images.columns:
        return []
    batches = sorted({str(b) for b in images.batch[images.source_episode.notna()]})
    return [b for b in batches if content.store.exists(layout.frames_source_key(b))]


def _masks(content: ReleaseContent, batch: str, root: Path):
    from dataset_pipeline.formats.robot_sources import describe_upload
    from dataset_pipeline.formats.write_back.core import episode_masks

    source = describe_upload(root)
    images = content.images
    frames = images[images.batch == batch]
    annotations = content.annotations[content.annotations.image_id.isin(set(frames.image_id))]
    return source, episode_masks(source, frames, annotations, reviewed=list(frames.image_id))


def export(content: ReleaseContent, out: ReleaseFolder) -> list[str]:
    from dataset_pipeline.formats.robot_sources import local_dataset
    from dataset_pipeline.formats.write_back.core import write_back

    written: list[str] = []
    for batch in _robot_batches(content):
        with (
            local_dataset(content.store, batch) as root,
            tempfile.TemporaryDirectory(prefix="dp-wb-") as folder,
        ):
            source, masks = _masks(content, batch, root)
            target = Path(folder) / "dataset"
            write_back(root, source, masks, target, batch=batch, class_names=content.taxonomy.names)
            for path in sorted(p for p in target.rglob("*") if p.is_file()):
                relative = f"{ROOT}/{batch}/{path.relative_to(target).as_posix()}"
                written.append(out.write_bytes(relative, path.read_bytes()))
    return written


@contextlib.contextmanager
def _local_folder(out: ReleaseFolder, relative: str) -> Iterator[Path]:
    if out.store.is_local:
        yield Path(out.store.path(out.key(relative)))
        return
    with tempfile.TemporaryDirectory(prefix="dp-wb-") as folder:
        for name in out.list(relative):
            target = Path(folder) / name[len(relative) + 1 :]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(out.read_bytes(name))
        yield Path(folder)


def validate(content: ReleaseContent, out: ReleaseFolder) -> list[str]:
    from dataset_pipeline.formats.robot_dataset import RobotDatasetError
    from dataset_pipeline.formats.robot_sources import local_dataset
    from dataset_pipeline.formats.write_back.core import WriteBack, check_write_back

    problems: list[str] = []
    for batch in _robot_batches(content):
        relative = f"{ROOT}/{batch}"
        with local_dataset(content.store, batch) as root, _local_folder(out, relative) as copy:
            source, masks = _masks(content, batch, root)
            directory = copy
            if source.kind == "rlds":
                found = sorted(p.parent for p in copy.rglob("dataset_info.json"))
                directory = found[0] if found else copy
            written = WriteBack(source.kind, directory, len(source.episodes), 0, masks.labelled_frames, 0.0)
            try:
                found_problems = check_write_back(root, source, masks, written, batch=batch)
            except RobotDatasetError as exc:
                found_problems = [str(exc)]
            problems += [f"{relative}: {p}" for p in found_problems]
    return problems

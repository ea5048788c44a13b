"""Robot datasets by kind: the readers, and an upload's dataset as a local folder.

The dispatch over ``lerobot/source.py``, ``rlds/source.py`` and ``episode_hdf5/source.py``
(each a :class:`~dataset_pipeline.formats.robot_dataset.Source`), for ingest and write-back.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dataset_pipeline import layout
from dataset_pipeline.formats.robot_dataset import (
    KINDS,
    Launcher,
    RobotDatasetError,
    RobotSource,
    Source,
    detect,
)
from dataset_pipeline.store import DatasetStore


def source_reader(kind: str) -> Source:
    """The robot-dataset reader of a kind (``lerobot``, ``rlds``, ``episode_hdf5``)."""
    from dataset_pipeline.formats.episode_hdf5 import source as episode_hdf5
    from dataset_pipeline.formats.lerobot import source as lerobot
    from dataset_pipeline.formats.rlds import source as rlds

    readers: dict[str, Source] = {"lerobot": lerobot, "rlds": rlds, "episode_hdf5": episode_hdf5}
    if kind not in readers:
        raise RobotDatasetError(f"unknown robot dataset kind {kind!r}; known: {', '.join(KINDS)}")
    return readers[kind]


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

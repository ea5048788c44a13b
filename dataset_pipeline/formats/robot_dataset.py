"""What the robot-dataset formats share: the source model, detection, frame sampling, the errors.

A robot dataset (LeRobot, RLDS/TFDS, ALOHA/DROID episode HDF5) is read by its format's
``source.py`` behind two calls, so ingest and write-back never look inside a format:

* ``describe(root) -> RobotSource``: episodes, lengths, cameras, fps, robot type, tasks;
  refuses a dataset whose metadata is unusable (naming the file and field);
* ``frames(root, source, picks, cameras) -> Iterator[SourceFrame]``: the RGB of the picked
  frames, episode by episode; a problem inside one episode raises :class:`EpisodeError`,
  which quarantines that episode and no other.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

#: The kinds, as ``source.json``, the CLI and the release name them.
KINDS: tuple[str, ...] = ("lerobot", "rlds", "episode_hdf5")
#: Where a frame's mask came from; stored per frame beside the class map as this code.
MASK_SOURCES: tuple[str, ...] = ("none", "human", "propagated", "model")


#: (command, environment variables) -> None: runs a worker in its environment
#: (:func:`dataset_pipeline.formats.environments.run_worker`); the default is a subprocess, an
#: asset's a Dagster Pipes session.
Launcher = Callable[[list[str], dict[str, str]], None]


def mask_file(episode: int, camera: str) -> str:
    """The file of one episode's class maps and flags for one camera, as write-back hands them on.

    >>> mask_file(3, "observations/images/cam_high")
    'episode_3_observations_images_cam_high.npz'
    """
    return f"episode_{episode}_{camera.replace('/', '_')}.npz"


class RobotDatasetError(ValueError):
    """The dataset cannot be read at all; the message names dataset, file and field."""


class EpisodeError(RobotDatasetError):
    """One episode cannot be read; the message names dataset, episode, frame and field."""

    def __init__(self, message: str, episode_index: int) -> None:
        super().__init__(message)
        self.episode_index = episode_index


@dataclass(frozen=True)
class Episode:
    index: int
    length: int
    task: str = ""


@dataclass(frozen=True)
class RobotSource:
    """A robot dataset as ingest needs it (what its metadata says, before any frame is read)."""

    kind: str
    version: str
    root: str
    cameras: tuple[str, ...]
    episodes: tuple[Episode, ...]
    fps: float | None = None
    robot_type: str | None = None
    frame_shapes: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    metadata: Mapping[str, object] = field(default_factory=dict)

    def provenance(self) -> dict[str, object]:
        """What the card and ``source.json`` say about where the frames came from."""
        return {
            "kind": self.kind,
            "version": self.version,
            "robot_type": self.robot_type,
            "fps": self.fps,
            "cameras": list(self.cameras),
            "episodes": len(self.episodes),
            "frames": sum(e.length for e in self.episodes),
            "tasks": sorted({e.task for e in self.episodes if e.task}),
            **{k: v for k, v in self.metadata.items() if k not in ("kind", "version")},
        }


@dataclass(frozen=True)
class SourceFrame:
    episode_index: int
    frame_index: int
    timestamp: float
    camera: str
    rgb: np.ndarray


class Source(Protocol):
    """A robot-dataset reader (each format's ``source.py``)."""

    KIND: str

    def describe(self, root: Path, *, launcher: Launcher | None = None) -> RobotSource: ...

    def frames(
        self,
        root: Path,
        source: RobotSource,
        picks: Mapping[int, Sequence[int]],
        cameras: Sequence[str],
        *,
        launcher: Launcher | None = None,
    ) -> Iterator[SourceFrame]: ...


def detect(root: Path) -> str | None:
    """The kind of robot dataset in ``root``, or None (a plain image upload).

    LeRobot: ``meta/info.json``. RLDS/TFDS: ``dataset_info.json`` and ``features.json`` in the
    folder or up to two levels below it (``<name>/<version>/``). Episode HDF5: ``.hdf5`` / ``.h5``
    files (any depth).
    """
    if (root / "meta" / "info.json").is_file():
        return "lerobot"
    if find_tfds_directory(root) is not None:
        return "rlds"
    if any(p.suffix in (".hdf5", ".h5") for p in root.rglob("*") if p.is_file()):
        return "episode_hdf5"
    return None


def find_tfds_directory(root: Path) -> Path | None:
    """The folder below ``root`` (depth ≤ 2) that holds a TFDS dataset's two metadata files."""
    candidates = [root, *sorted(root.glob("*")), *sorted(root.glob("*/*"))]
    for folder in candidates:
        if (
            folder.is_dir()
            and (folder / "dataset_info.json").is_file()
            and (folder / "features.json").is_file()
        ):
            return folder
    return None


def sample_frames(
    length: int, *, every: int | None = None, fps: float | None = None, source_fps: float | None = None
) -> list[int]:
    """The frame indices an episode of ``length`` frames contributes.

    ``every`` keeps every N-th frame; ``fps`` keeps the frames nearest a target rate (it needs
    the source's rate; a target at or above it keeps every frame). Both None: every frame.

    >>> sample_frames(10, every=4)
    [0, 4, 8]
    >>> sample_frames(10, fps=5, source_fps=30)
    [0, 6]
    >>> sample_frames(3, fps=60, source_fps=30)
    [0, 1, 2]
    """
    if every is not None and fps is not None:
        raise ValueError("sample with either every N-th frame or a target fps, not both")
    if every is not None:
        if every < 1:
            raise ValueError(f"every must be at least 1, not {every}")
        return list(range(0, length, every))
    if fps is not None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, not {fps}")
        if not source_fps:
            raise ValueError("a target fps needs the dataset's own fps, which it does not give; use every N")
        step = max(1.0, source_fps / fps)
        return sorted(
            {int(math.floor(k * step + 1e-9)) for k in range(int(math.ceil(length / step)))} - {length}
        )
    return list(range(length))


def check_cameras(source: RobotSource, cameras: Sequence[str]) -> tuple[str, ...]:
    """The cameras to ingest: all of the dataset's by default; an unknown name is refused."""
    if not cameras:
        return source.cameras
    unknown = [c for c in cameras if c not in source.cameras]
    if unknown:
        raise RobotDatasetError(
            f"{source.root}: no camera {', '.join(repr(c) for c in unknown)}; "
            f"the dataset's cameras are {', '.join(source.cameras) or 'none'}"
        )
    return tuple(cameras)


def check_frame_size(
    where: str, height: int, width: int, *, max_pixels: int, episode_index: int | None = None
) -> None:
    """Refuse absurd dimensions before allocating anything for them."""
    if height <= 0 or width <= 0 or height * width > max_pixels:
        message = f"{where}: frame size {height}x{width} is outside 1..{max_pixels} pixels"
        if episode_index is None:
            raise RobotDatasetError(message)
        raise EpisodeError(message, episode_index)

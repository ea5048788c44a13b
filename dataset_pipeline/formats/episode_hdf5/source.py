"""Read a folder of episode HDF5 files as ALOHA / ACT's recorder writes them (and DROID-style kin).

One file per episode (``episode_<n>.hdf5``; ``n`` is the episode index, else the files' sorted
order). A camera is a uint8 ``(T, H, W, 3)`` dataset under a group named ``images`` (or
``image``), or one whose path names an image, rgb or camera; or ALOHA's compressed form ``(T, padded_len)`` uint8 holding one JPEG per row
(the file's ``compress`` attribute; JPEG decoders stop at the end-of-image marker, so the
padding needs no ``compress_len``). The camera key is the dataset's path
(``observations/images/cam_high``). fps comes from a root attribute ``fps`` / ``control_freq``
or ``1 / DT`` where one exists; ALOHA's files carry none (its recorder runs at 50 Hz, which the
user sets with ``--fps`` sampling only if it is known).

Refused: external links and virtual datasets (they point outside the upload), absurd frame
sizes, cameras of unequal lengths within an episode.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from dataset_pipeline.formats.robot_dataset import (
    Episode,
    EpisodeError,
    Launcher,
    RobotDatasetError,
    RobotSource,
    SourceFrame,
    check_frame_size,
)
from dataset_pipeline.images import DEFAULT_MAX_PIXELS

KIND = "episode_hdf5"
SUFFIXES: tuple[str, ...] = (".hdf5", ".h5")
#: The class maps our write-back adds; a file that has it was written back already.
SEGMENTATION = "observations/images/segmentation"
MAX_FRAMES = 1_000_000


def episode_files(root: Path) -> list[tuple[int, Path]]:
    """(episode index, file) pairs: the number in each file's name when those are unique."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
    numbers = []
    for path in files:
        found = re.findall(r"\d+", path.stem)
        numbers.append(int(found[-1]) if found else None)
    if None not in numbers and len(set(numbers)) == len(numbers):
        return sorted(zip(numbers, files, strict=True))  # type: ignore[arg-type]
    return list(enumerate(files))


def _check_links(handle, where: str, episode: int) -> None:
    import h5py

    problems: list[str] = []

    def visit(group, prefix: str) -> None:
        for name in group:
            link = group.get(name, getlink=True)
            path = f"{prefix}/{name}"
            if isinstance(link, h5py.ExternalLink):
                problems.append(f"{path} is an external link to {link.filename}")
                continue
            if isinstance(link, h5py.SoftLink):
                continue
            item = group[name]
            if isinstance(item, h5py.Group):
                visit(item, path)
            elif isinstance(item, h5py.Dataset) and item.is_virtual:
                problems.append(f"{path} is a virtual dataset (its data lives in other files)")

    visit(handle, "")
    if problems:
        raise EpisodeError(f"{where}: {problems[0]}; refused, an upload must hold its own data", episode)


def _cameras(handle) -> dict[str, object]:
    """The camera datasets: uint8 ``(T, H, W, 3)`` under an ``images`` / ``image`` group (ALOHA) or
    named like one elsewhere (``observation/camera/image/left``, ``rgb``), and ALOHA's compressed
    ``(T, padded)`` rows under an ``images`` group. Our own class maps are never a camera."""
    import h5py

    found: dict[str, object] = {}

    def visit(name: str, item) -> None:
        if not isinstance(item, h5py.Dataset) or item.dtype != np.uint8:
            return
        parts = name.split("/")
        if parts[-1].startswith("segmentation"):
            return
        under_images = len(parts) > 1 and parts[-2] in ("images", "image")
        looks_like = any(word in part for part in parts for word in ("image", "rgb", "camera"))
        if item.ndim == 4 and item.shape[-1] == 3 and (under_images or looks_like):
            found[name] = item
        elif item.ndim == 2 and under_images:
            found[name] = item

    handle.visititems(visit)
    return found


def _fps(handle) -> float | None:
    for name in ("fps", "control_freq", "frequency"):
        if name in handle.attrs:
            return float(handle.attrs[name])
    if "DT" in handle.attrs and float(handle.attrs["DT"]) > 0:
        return 1.0 / float(handle.attrs["DT"])
    return None


def _open(path: Path, where: str, episode: int):
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise EpisodeError(f"{where}: not a readable HDF5 file ({exc})", episode) from None


def describe(root: Path, *, launcher: Launcher | None = None) -> RobotSource:
    files = episode_files(root)
    if not files:
        raise RobotDatasetError(f"{root}: no .hdf5 / .h5 episode files")
    episodes: list[Episode] = []
    cameras: tuple[str, ...] | None = None
    shapes: dict[str, tuple[int, int]] = {}
    fps_values: set[float] = set()
    already = False
    quarantined: dict[int, str] = {}
    for index, path in files:
        where = f"{root}: episode {index} ({path.relative_to(root)})"
        try:
            handle = _open(path, where, index)
            with handle:
                _check_links(handle, where, index)
        except EpisodeError as exc:
            quarantined[index] = str(exc)  # this file alone is left out; the others are described
            continue
        with _open(path, where, index) as handle:
            found = _cameras(handle)
            if not found:
                raise RobotDatasetError(f"{where}: no camera dataset under an 'images' group")
            names = tuple(sorted(found))
            if cameras is None:
                cameras = names
            elif names != cameras:
                raise RobotDatasetError(
                    f"{where}: cameras {list(names)} differ from the first file's {list(cameras)}"
                )
            lengths = {name: int(found[name].shape[0]) for name in names}  # type: ignore[attr-defined]
            if len(set(lengths.values())) > 1:
                raise RobotDatasetError(f"{where}: cameras of unequal lengths {lengths}")
            length = lengths[names[0]]
            if length > MAX_FRAMES:
                raise RobotDatasetError(f"{where}: {length} frames (more than {MAX_FRAMES})")
            for name in names:
                item = found[name]
                if item.ndim == 4:  # type: ignore[attr-defined]
                    height, width = int(item.shape[1]), int(item.shape[2])  # type: ignore[attr-defined]
                    check_frame_size(f"{where}, field {name}", height, width, max_pixels=DEFAULT_MAX_PIXELS)
                    shapes.setdefault(name, (height, width))
            fps = _fps(handle)
            if fps:
                fps_values.add(fps)
            already = already or SEGMENTATION in handle
            task = handle.attrs.get("task") or handle.attrs.get("language_instruction") or ""
            if isinstance(task, bytes):
                task = task.decode("utf-8", "replace")
            episodes.append(Episode(index, length, str(task)))
    if cameras is None:
        raise RobotDatasetError(f"{root}: no readable episode file ({'; '.join(quarantined.values())})")
    return RobotSource(
        kind=KIND,
        version="aloha",
        root=str(root),
        cameras=cameras,
        episodes=tuple(episodes),
        fps=fps_values.pop() if len(fps_values) == 1 else None,
        robot_type=None,
        frame_shapes=shapes,
        metadata={
            "files": [str(p.relative_to(root)) for _, p in files],
            "already_segmented": already,
            "quarantined": quarantined,
        },
    )


def _decode_jpeg_row(row: np.ndarray, where: str, episode: int) -> np.ndarray:
    import cv2

    image = cv2.imdecode(np.ascontiguousarray(row), cv2.IMREAD_COLOR)
    if image is None:
        raise EpisodeError(f"{where}: the compressed row is not a decodable image", episode)
    return np.ascontiguousarray(image[:, :, ::-1])


def frames(
    root: Path,
    source: RobotSource,
    picks: Mapping[int, Sequence[int]],
    cameras: Sequence[str],
    *,
    launcher: Launcher | None = None,
) -> Iterator[SourceFrame]:
    files = dict(episode_files(root))
    for episode, wanted in sorted(picks.items()):
        if not wanted:
            continue
        path = files[episode]
        where = f"{root}: episode {episode} ({path.relative_to(root)})"
        with _open(path, where, episode) as handle:
            _check_links(handle, where, episode)
            fps = _fps(handle) or source.fps
            stamps = handle["timestamp"][()] if "timestamp" in handle else None
            for camera in cameras:
                if camera not in handle:
                    raise EpisodeError(f"{where}, field {camera}: missing", episode)
                item = handle[camera]
                for position in wanted:
                    field_where = f"{where}, frame {position}, field {camera}"
                    try:
                        value = item[position]
                    except (OSError, ValueError, IndexError) as exc:
                        raise EpisodeError(f"{field_where}: not readable ({exc})", episode) from None
                    rgb = (
                        _decode_jpeg_row(value, field_where, episode) if item.ndim == 2 else np.asarray(value)
                    )
                    if stamps is not None and len(stamps) > position:
                        timestamp = float(stamps[position])
                    else:
                        timestamp = position / fps if fps else float(position)
                    yield SourceFrame(episode, position, timestamp, camera, rgb)

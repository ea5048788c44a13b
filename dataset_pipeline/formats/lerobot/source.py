"""Read a LeRobot dataset (codebase v3.0 or v2.1) as its files are: ``meta/``, Parquet, mp4.

This runs in the project's environment (pyarrow and PyAV, no lerobot: lerobot 0.4.4 pins a
torch we do not use); write-back and its check use lerobot itself (``robot_workers/lerobot_worker.py``).

v3.0: ``meta/info.json`` (``data_path`` / ``video_path`` templates with chunk and file
indices), ``meta/episodes/*/*.parquet`` (per episode: length, tasks, data file, and per video
key its file and ``from_timestamp``), ``meta/tasks.parquet``. v2.1: the same info with
per-episode templates (``episode_chunk``, ``episode_index``), ``meta/episodes.jsonl`` and
``meta/tasks.jsonl``. A camera is a feature of dtype ``image`` (encoded bytes in the Parquet
rows) or ``video`` (frames in an mp4 at ``from_timestamp + timestamp``; AV1, H.264 and HEVC
decode through PyAV's FFmpeg).
"""

from __future__ import annotations

import io
import json
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

KIND = "lerobot"
INFO = "meta/info.json"
VERSIONS: tuple[str, ...] = ("v2.1", "v3.0")
#: The segmentation feature our write-back adds; a source that has it was written back already.
SEGMENTATION = "observation.segmentation"


def _info(root: Path) -> dict:
    path = root / INFO
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RobotDatasetError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(info, dict):
        raise RobotDatasetError(f"{path}: not a JSON object")
    version = info.get("codebase_version")
    if version not in VERSIONS:
        raise RobotDatasetError(
            f"{path}: field 'codebase_version' is {version!r}; this reads LeRobot {' and '.join(VERSIONS)}"
        )
    for name in ("fps", "features", "data_path"):
        if name not in info:
            raise RobotDatasetError(f"{path}: field {name!r} is missing")
    if not isinstance(info["features"], dict):
        raise RobotDatasetError(f"{path}: field 'features' is not an object")
    return info


def _episodes_v30(root: Path) -> list[dict]:
    import pyarrow.parquet as pq

    files = sorted((root / "meta" / "episodes").glob("*/*.parquet"))
    if not files:
        raise RobotDatasetError(f"{root}: meta/episodes/ holds no Parquet file (field 'episodes')")
    rows: list[dict] = []
    for path in files:
        try:
            table = pq.read_table(path, columns=None)
        except (OSError, ValueError) as exc:
            raise RobotDatasetError(f"{path}: not readable Parquet ({exc})") from None
        keep = [c for c in table.column_names if not c.startswith("stats/")]
        rows.extend(table.select(keep).to_pylist())
    return rows


def _episodes_v21(root: Path) -> list[dict]:
    path = root / "meta" / "episodes.jsonl"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise RobotDatasetError(f"{path}: not readable ({exc})") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise RobotDatasetError(f"{path}: line {number}: not JSON ({exc})") from None
    return rows


def describe(root: Path, *, launcher: Launcher | None = None) -> RobotSource:
    info = _info(root)
    version = str(info["codebase_version"])
    rows = _episodes_v30(root) if version == "v3.0" else _episodes_v21(root)
    features = info["features"]
    cameras = tuple(
        k for k, f in features.items() if isinstance(f, dict) and f.get("dtype") in ("image", "video")
    )
    if not cameras:
        raise RobotDatasetError(f"{root / INFO}: field 'features' names no image or video feature")
    shapes: dict[str, tuple[int, int]] = {}
    for camera in cameras:
        shape = features[camera].get("shape") or []
        names = features[camera].get("names") or []
        if len(shape) != 3:
            raise RobotDatasetError(f"{root / INFO}: features.{camera}.shape is {shape!r}, not [H, W, C]")
        channels_first = list(names)[:1] in (["channels"], ["channel"], ["c"])
        if channels_first or (not names and shape[0] in (1, 3) and shape[2] not in (1, 3)):
            height, width = int(shape[1]), int(shape[2])
        else:
            height, width = int(shape[0]), int(shape[1])
        check_frame_size(f"{root / INFO}: features.{camera}", height, width, max_pixels=DEFAULT_MAX_PIXELS)
        shapes[camera] = (height, width)
    episodes = []
    for row in rows:
        try:
            index, length = int(row["episode_index"]), int(row["length"])
        except (KeyError, TypeError, ValueError):
            raise RobotDatasetError(
                f"{root}: an episode record lacks 'episode_index' or 'length': {str(row)[:120]}"
            ) from None
        tasks = row.get("tasks") or []
        episodes.append(Episode(index, length, str(tasks[0]) if len(tasks) else ""))
    fps = float(info["fps"])
    metadata = {
        "robot_type": info.get("robot_type"),
        "codebase_version": version,
        "features": sorted(features),
        "already_segmented": SEGMENTATION in features,
    }
    return RobotSource(
        kind=KIND,
        version=version,
        root=str(root),
        cameras=cameras,
        episodes=tuple(sorted(episodes, key=lambda e: e.index)),
        fps=fps,
        robot_type=info.get("robot_type"),
        frame_shapes=shapes,
        metadata=metadata,
    )


def _episode_rows(root: Path, info: dict, record: dict, version: str):
    """The episode's Parquet rows (a pyarrow table in frame order)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    episode = int(record["episode_index"])
    if version == "v3.0":
        relative = info["data_path"].format(
            chunk_index=int(record["data/chunk_index"]), file_index=int(record["data/file_index"])
        )
    else:
        chunk = episode // int(info.get("chunks_size") or 1000)
        relative = info["data_path"].format(episode_chunk=chunk, episode_index=episode)
    path = root / relative
    if not path.is_file():
        raise EpisodeError(f"{root}: episode {episode}: data file {relative} is missing", episode)
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:
        raise EpisodeError(
            f"{root}: episode {episode}: {relative} is not readable Parquet ({exc})", episode
        ) from None
    if "episode_index" in table.column_names:
        table = table.filter(pc.equal(table["episode_index"], episode))
    if "frame_index" in table.column_names:
        table = table.sort_by("frame_index")
    if table.num_rows != int(record["length"]):
        raise EpisodeError(
            f"{root}: episode {episode}: {relative} holds {table.num_rows} rows, the episode's "
            f"field 'length' says {record['length']}",
            episode,
        )
    return table, relative


def _video_path(root: Path, info: dict, record: dict, camera: str, version: str) -> tuple[Path, float]:
    episode = int(record["episode_index"])
    template = info.get("video_path")
    if not template:
        raise EpisodeError(
            f"{root / INFO}: field 'video_path' is missing for video feature {camera}", episode
        )
    if version == "v3.0":
        try:
            relative = template.format(
                video_key=camera,
                chunk_index=int(record[f"videos/{camera}/chunk_index"]),
                file_index=int(record[f"videos/{camera}/file_index"]),
            )
            start = float(record[f"videos/{camera}/from_timestamp"])
        except (KeyError, TypeError, ValueError):
            raise EpisodeError(
                f"{root}: episode {episode}: its meta/episodes record has no videos/{camera}/ file fields",
                episode,
            ) from None
    else:
        chunk = episode // int(info.get("chunks_size") or 1000)
        relative = template.format(episode_chunk=chunk, video_key=camera, episode_index=episode)
        start = 0.0
    path = root / relative
    if not path.is_file():
        raise EpisodeError(f"{root}: episode {episode}, field {camera}: video {relative} is missing", episode)
    return path, start


def decode_video_frames(
    path: Path, times: Sequence[float], tolerance: float, where: str, episode: int
) -> list[np.ndarray]:
    """The RGB frames of ``path`` nearest each time (seconds), within ``tolerance``.

    Seeks to the key frame before the first time and decodes forward once.
    """
    import av

    wanted = sorted(set(range(len(times))), key=lambda i: times[i])
    found: dict[int, np.ndarray] = {}
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            first = times[wanted[0]] if wanted else 0.0
            if first > 0 and stream.time_base:
                container.seek(int(max(0.0, first - 1.0) / stream.time_base), stream=stream, backward=True)
            position = 0
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                while position < len(wanted) and times[wanted[position]] < frame.time - tolerance:
                    position += 1  # passed without a frame close enough
                if position >= len(wanted):
                    break
                target = times[wanted[position]]
                if abs(frame.time - target) <= tolerance:
                    found[wanted[position]] = frame.to_ndarray(format="rgb24")
                    position += 1
    except (av.error.FFmpegError, OSError, IndexError) as exc:
        raise EpisodeError(f"{where}: video {path.name} cannot be decoded ({exc})", episode) from None
    missing = [i for i in range(len(times)) if i not in found]
    if missing:
        raise EpisodeError(
            f"{where}, frame {missing[0]}: video {path.name} has no frame at {times[missing[0]]:.4f} s "
            f"({len(missing)} of {len(times)} asked for are missing: the video is shorter than the "
            "Parquet rows or truncated)",
            episode,
        )
    return [found[i] for i in range(len(times))]


def _decode_image(value: object, where: str, episode: int) -> np.ndarray:
    from PIL import Image

    data = value.get("bytes") if isinstance(value, dict) else None
    if not data:
        raise EpisodeError(f"{where}: the image holds no bytes", episode)
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise EpisodeError(f"{where}: the image cannot be decoded ({exc})", episode) from None


def frames(
    root: Path,
    source: RobotSource,
    picks: Mapping[int, Sequence[int]],
    cameras: Sequence[str],
    *,
    launcher: Launcher | None = None,
) -> Iterator[SourceFrame]:
    info = _info(root)
    version = str(info["codebase_version"])
    records = {
        int(r["episode_index"]): r
        for r in (_episodes_v30(root) if version == "v3.0" else _episodes_v21(root))
    }
    tolerance = 0.5 / float(info["fps"])
    for episode, wanted in sorted(picks.items()):
        if not wanted:
            continue
        record = records[episode]
        table, relative = _episode_rows(root, info, record, version)
        frame_numbers = table["frame_index"].to_pylist() if "frame_index" in table.column_names else None
        stamps = table["timestamp"].to_pylist() if "timestamp" in table.column_names else None
        for camera in cameras:
            kind = info["features"][camera]["dtype"]
            where = f"{root}: episode {episode}, field {camera}"
            if kind == "video":
                if stamps is None:
                    raise EpisodeError(
                        f"{root}: episode {episode}: {relative} has no 'timestamp' column", episode
                    )
                path, start = _video_path(root, info, record, camera, version)
                images = decode_video_frames(
                    path, [start + float(stamps[i]) for i in wanted], tolerance, where, episode
                )
            else:
                if camera not in table.column_names:
                    raise EpisodeError(f"{where}: {relative} has no such column", episode)
                column = table[camera]
                images = [_decode_image(column[i].as_py(), f"{where}, frame {i}", episode) for i in wanted]
            for position, rgb in zip(wanted, images, strict=True):
                yield SourceFrame(
                    episode_index=episode,
                    frame_index=int(frame_numbers[position]) if frame_numbers else position,
                    timestamp=float(stamps[position]) if stamps else position / float(info["fps"]),
                    camera=camera,
                    rgb=rgb,
                )

"""Robot datasets in: a LeRobot / RLDS / episode-HDF5 upload becomes frames to label.

A robot dataset's upload is ``incoming/<batch>/`` holding the dataset as its tools wrote it,
and ``UPLOAD_COMPLETE`` (written last; optionally the settings below as JSON).
:func:`ingest_dataset` samples frames (cameras, every N-th frame or a target fps), writes
them losslessly as PNG with a manifest under ``frames/<batch>/`` (``raw_captures`` then reads
them like any upload) and ``source.json``: the dataset's kind, version, robot type, fps,
tasks, the settings, and the episodes it quarantined with the reason. Each frame's manifest
row points back to its source: ``episode_index`` (the source's own), ``frame_index`` (the
source's), ``timestamp`` (seconds in the episode) and ``camera_model`` (the camera key).

Out again - the masks written back into a copy of the dataset - is
:mod:`dataset_pipeline.formats.write_back` (the CLI's ``write-back`` and the release's format).
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dataset_pipeline import layout, schemas
from dataset_pipeline.formats.robot_dataset import (
    EpisodeError,
    Launcher,
    RobotDatasetError,
    RobotSource,
    check_cameras,
    sample_frames,
)
from dataset_pipeline.formats.robot_sources import describe_upload, local_dataset, source_reader
from dataset_pipeline.store import DatasetStore

if TYPE_CHECKING:
    pass

#: Without settings: a target of 2 frames per second where the dataset gives its fps, else every 10th.
DEFAULT_FPS = 2.0
DEFAULT_EVERY = 10
#: Robot datasets do not record the light; the captures' ``lighting`` says so.
UNKNOWN_LIGHTING = "unknown"
#: A sampled frame's manifest row: the required columns, and where in its episode it is.
MANIFEST_COLUMNS: tuple[str, ...] = (*schemas.MANIFEST_REQUIRED, "episode_index", "timestamp")


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
        # episodes the reader could not even describe (an HDF5 file with an external link)
        described = source.metadata.get("quarantined") or {}
        assert isinstance(described, dict)
        quarantined = {int(e): str(r).removeprefix(f"{folder}: ") for e, r in described.items()}
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
                quarantined[exc.episode_index] = str(exc).removeprefix(f"{folder}: ")
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


def frames_per_episode_text(result: DatasetIngest) -> str:
    """The CLI's table: frames taken per episode, and the quarantined episodes with the reason."""
    buffer = io.StringIO()
    for episode, count in sorted(result.frames_per_episode.items()):
        buffer.write(f"  episode {episode}: {count} frames\n")
    for episode, reason in sorted(result.quarantined.items()):
        buffer.write(f"  episode {episode}: quarantined - {reason}\n")
    return buffer.getvalue()

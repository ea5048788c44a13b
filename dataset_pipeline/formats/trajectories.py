"""Frames grouped into trajectories, for the formats that write episodes (LeRobot, episode HDF5)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from dataset_pipeline.formats.release_content import ReleaseContent


def episodes(content: ReleaseContent) -> list[pd.DataFrame]:
    """The released frames of each episode (frames without an episode_id are in no trajectory),
    in frame order; episodes ordered by split, then episode_id."""
    frames = content.images[content.images.episode_id.notna()]
    groups = [
        group.sort_values(["frame_index", "capture_ts"], kind="stable")
        for _, group in frames.groupby("episode_id", sort=True)
    ]
    order = {"train": 0, "val": 1, "test": 2}
    return sorted(groups, key=lambda g: (order.get(g.split.iloc[0], 9), str(g.episode_id.iloc[0])))


def episode_seconds(frames: pd.DataFrame) -> np.ndarray:
    """Seconds since the episode's first frame, per frame (float64)."""
    import pandas as pd

    stamps = pd.to_datetime(frames.capture_ts, utc=True)
    return (stamps - stamps.iloc[0]).dt.total_seconds().to_numpy(np.float64)


def camera_key(camera_model: object) -> str:
    """A camera name usable as a dataset / feature key.

    >>> camera_key("RealSense D435i")
    'realsense_d435i'
    """
    text = "".join(ch if ch.isalnum() else "_" for ch in str(camera_model or "camera").lower())
    return "_".join(part for part in text.split("_") if part) or "camera"

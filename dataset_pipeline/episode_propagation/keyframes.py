"""Which frames of an episode people label by hand: every N-th, and more where the scene moves fast.

Propagation error grows with how far things moved since the keyframe, not with how many frames
passed; so besides every ``every``-th frame, a frame becomes a keyframe once the motion summed
since the last keyframe passes ``max_motion_px`` (the 95th percentile of DIS flow magnitude
between consecutive frames, at full resolution). The first and the last frame are keyframes, so
no frame is only extrapolated from one side. Episodes shorter than ``min_frames`` are labelled
whole (two review rounds cost more than they save there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Motion is measured at this longest side (flow magnitudes are scaled back to full resolution).
MOTION_SIDE = 320


@dataclass(frozen=True)
class KeyframeSettings:
    """How keyframes are chosen (``KeyframeSettings(every=1)`` labels every frame by hand)."""

    every: int = 5
    max_motion_px: float = 40.0
    min_frames: int = 12

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"keyframe every must be >= 1, got {self.every}")
        if self.max_motion_px <= 0:
            raise ValueError(f"max_motion_px must be > 0, got {self.max_motion_px}")


def frame_motion(previous: np.ndarray, current: np.ndarray) -> float:
    """How far the scene moved between two frames: the 95th percentile of the flow magnitude, in
    full-resolution pixels (RGB or grey frames of one size)."""
    import cv2

    from dataset_pipeline.episode_propagation.flow import dis_flow, gray

    h, w = previous.shape[:2]
    scale = min(1.0, MOTION_SIDE / max(h, w))
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    a = cv2.resize(gray(previous), size, interpolation=cv2.INTER_AREA)
    b = cv2.resize(gray(current), size, interpolation=cv2.INTER_AREA)
    magnitude = np.linalg.norm(dis_flow(a, b, "fast"), axis=-1)
    return float(np.percentile(magnitude, 95)) / scale


def choose_keyframes(motion: Sequence[float], settings: KeyframeSettings) -> list[tuple[int, str]]:
    """(frame, reason) of an episode's keyframes from the motion into each frame (``motion[0]`` unused).

    Reasons: ``first``, ``every`` (the N-th frame since the last keyframe), ``motion``
    (the summed motion passed the limit), ``last``, ``short`` (an episode labelled whole).

    >>> choose_keyframes([0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], KeyframeSettings(every=5))
    [(0, 'first'), (5, 'every'), (10, 'every'), (12, 'last')]
    >>> choose_keyframes([0] + [30.0] * 12, KeyframeSettings(every=5))[:3]
    [(0, 'first'), (2, 'motion'), (4, 'motion')]
    """
    n = len(motion)
    if n < settings.min_frames or settings.every == 1:
        return [(i, "short" if n < settings.min_frames else "every") for i in range(n)]
    chosen = [(0, "first")]
    last, moved = 0, 0.0
    for index in range(1, n):
        moved += float(motion[index])
        if index == n - 1:
            chosen.append((index, "last"))
        elif index - last >= settings.every:
            chosen.append((index, "every"))
        elif moved > settings.max_motion_px:
            chosen.append((index, "motion"))
        else:
            continue
        last, moved = index, 0.0
    return chosen

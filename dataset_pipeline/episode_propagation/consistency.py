"""Temporal consistency of an episode's class maps: a measure that needs no ground truth.

Consecutive frames of a robot episode show nearly the same scene, so frame t's class map, moved
by the optical flow from t+1 to t, should cover frame t+1's: the per-class IoU of the warped map
and the next one is high where the labels follow the objects and drops where a mask drifted,
jumped or lost a part. A class that appears for one or two frames, or vanishes for one or two
frames between frames that have it, is a flicker: objects do not blink.

>>> import numpy as np
>>> frames = [np.full((16, 16, 3), 90, np.uint8)] * 4
>>> maps = [np.zeros((16, 16), np.uint8) for _ in range(4)]
>>> for m in (maps[0], maps[1], maps[3]): m[1:4, 1:4] = 2
>>> result = episode_consistency(frames, maps, min_area=1)
>>> [(t.frame, t.class_id, t.iou) for t in result.transitions]
[(1, 2, 1.0)]
>>> result.flickers
[Flicker(class_id=2, start=2, length=1, kind='vanishes')]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

#: A flicker is a presence or absence run of at most this many frames.
FLICKER_MAX_FRAMES = 2


@dataclass(frozen=True)
class Transition:
    """Class ``class_id``'s warped IoU from frame ``frame - 1`` onto frame ``frame``."""

    frame: int
    class_id: int
    iou: float


@dataclass(frozen=True)
class Flicker:
    """``class_id`` appears (or vanishes) at ``start`` for ``length`` frames, and not around them."""

    class_id: int
    start: int
    length: int
    kind: str  # appears / vanishes


@dataclass
class EpisodeConsistency:
    transitions: list[Transition] = field(default_factory=list)
    flickers: list[Flicker] = field(default_factory=list)

    def per_class(self) -> dict[int, tuple[int, float, float, int]]:
        """class -> (transitions, mean warped IoU, min warped IoU, frame of the worst transition)."""
        out: dict[int, tuple[int, float, float, int]] = {}
        for class_id in sorted({t.class_id for t in self.transitions}):
            mine = [t for t in self.transitions if t.class_id == class_id]
            worst = min(mine, key=lambda t: t.iou)
            mean = round(float(np.mean([t.iou for t in mine])), 4)
            out[class_id] = (len(mine), mean, worst.iou, worst.frame)
        return out


def warped_ious(
    previous: np.ndarray, current: np.ndarray, flow: np.ndarray, min_area: int
) -> dict[int, float]:
    """Per class present in both maps: IoU of ``previous`` warped by ``flow`` (current -> previous)
    and ``current``.

    A class under ``min_area`` pixels in either map is left out: a few pixels' IoU says nothing,
    and an object entering or leaving the view is not an inconsistency (presence runs, which
    :func:`flickers` reads, say whether it came back too soon). Background (0) is never scored.
    """
    from dataset_pipeline.episode_propagation.core import present_ids
    from dataset_pipeline.episode_propagation.flow import warp_labels

    warped = warp_labels(previous, flow)
    ids = sorted(set(present_ids(previous)) | set(present_ids(current)))
    index = {c: k for k, c in enumerate(ids)}
    lookup = np.zeros(max(ids) + 1, np.int64)
    lookup[ids] = np.arange(len(ids))
    n = len(ids)
    # one joint histogram of (warped, current) gives every class's intersection and union
    joint = np.bincount((lookup[warped] * n + lookup[current]).ravel(), minlength=n * n).reshape(n, n)
    area_before = np.bincount(lookup[previous].ravel(), minlength=n)
    out = {}
    for class_id in ids:
        if class_id == 0:
            continue
        k = index[class_id]
        inter, in_warped, in_current = joint[k, k], joint[k].sum(), joint[:, k].sum()
        if area_before[k] < min_area or in_current < min_area:
            continue
        union = in_warped + in_current - inter
        out[class_id] = round(int(inter) / int(union), 4) if union else 1.0
    return out


def flickers(presence: dict[int, list[bool]]) -> list[Flicker]:
    """The short presence / absence runs of each class's per-frame presence.

    >>> flickers({4: [False, True, False, False, True, True, True]})
    [Flicker(class_id=4, start=1, length=1, kind='appears'), Flicker(class_id=4, start=2, length=2, kind='vanishes')]
    """
    found = []
    for class_id, seen in sorted(presence.items()):
        runs: list[tuple[bool, int, int]] = []  # (present, start, length)
        for index, value in enumerate(seen):
            if runs and runs[-1][0] == value:
                runs[-1] = (value, runs[-1][1], runs[-1][2] + 1)
            else:
                runs.append((value, index, 1))
        for position in range(1, len(runs) - 1):  # a run with the opposite on both sides
            present, start, length = runs[position]
            if length <= FLICKER_MAX_FRAMES:
                found.append(Flicker(class_id, start, length, "appears" if present else "vanishes"))
    return found


def episode_consistency(
    frames: Sequence[np.ndarray],
    class_maps: Sequence[np.ndarray],
    *,
    min_area: int = 50,
    preset: str = "medium",
) -> EpisodeConsistency:
    """Warped IoU of every consecutive pair and every class, and the flickers, of one episode."""
    from dataset_pipeline.episode_propagation.flow import dis_flow, gray

    result = EpisodeConsistency()
    presence: dict[int, list[bool]] = {}
    from dataset_pipeline.episode_propagation.core import present_ids

    classes = sorted({c for m in class_maps for c in present_ids(m) if c != 0})
    previous_gray = None
    for index, (frame, labels) in enumerate(zip(frames, class_maps, strict=True)):
        here = gray(frame)
        areas = np.bincount(labels.ravel(), minlength=max(classes, default=0) + 1)
        for class_id in classes:
            presence.setdefault(class_id, []).append(int(areas[class_id]) >= min_area)
        if previous_gray is not None:
            flow = dis_flow(here, previous_gray, preset)
            for class_id, iou in warped_ious(class_maps[index - 1], labels, flow, min_area).items():
                result.transitions.append(Transition(index, class_id, iou))
        previous_gray = here
    result.flickers = flickers(presence)
    return result

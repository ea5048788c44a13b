"""What every propagation backend shares: the result of a frame, the backend contract, the checks
on an episode and its keyframes, and the one error they raise.

An episode is a sequence of RGB frames (index = position) and keyframes are label maps of some
of them (index -> (H, W) integer array). A backend returns one :class:`PropagatedFrame` per
frame, keyframes included (as given).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

#: DIS optical flow's coarsest patch needs this much image (OpenCV refuses under 12 px).
MIN_SIDE_PX = 16


class PropagationError(ValueError):
    """An episode or its keyframes cannot be propagated; nothing is written.

    >>> str(PropagationError("kitchen-ep003", "frame 7", "keyframe mask is 64x48, the frame 640x480"))
    'episode kitchen-ep003, frame 7: keyframe mask is 64x48, the frame 640x480'
    """

    def __init__(self, episode: str, where: str, message: str) -> None:
        self.episode, self.where = episode, where
        super().__init__(f"episode {episode}, {where}: {message}")


@dataclass(frozen=True)
class PropagatedFrame:
    """One frame's label map and where it came from.

    ``sources`` are the keyframes it was carried from (itself for a keyframe), ``distance`` the
    frames to the nearest of them, ``confidence`` in [0, 1] (1 for a keyframe) and
    ``id_confidence`` the same per id present.
    """

    index: int
    labels: np.ndarray
    sources: tuple[int, ...]
    distance: int
    confidence: float
    id_confidence: dict[int, float] = field(default_factory=dict)

    @property
    def is_keyframe(self) -> bool:
        return self.distance == 0

    @classmethod
    def keyframe(cls, index: int, labels: np.ndarray) -> PropagatedFrame:
        ids = {i: 1.0 for i in present_ids(labels) if i != 0}
        return cls(index, labels, (index,), 0, 1.0, ids)


class Propagator(Protocol):
    """A propagation backend (``flow.FlowPropagator``, ``sam2_video.Sam2VideoPropagator``)."""

    name: str
    model_version: str

    def propagate(
        self, frames: Sequence[np.ndarray], keyframes: Mapping[int, np.ndarray], episode: str = "episode"
    ) -> list[PropagatedFrame]: ...


def present_ids(labels: np.ndarray) -> list[int]:
    """The ids a label map holds, in order (a histogram for small non-negative ids: ~20x np.unique).

    >>> present_ids(np.array([[0, 3], [3, 7]], np.uint8))
    [0, 3, 7]
    """
    if labels.dtype.kind in "ui" and labels.size and 0 <= int(labels.min()) and int(labels.max()) < 1 << 16:
        return [int(i) for i in np.flatnonzero(np.bincount(labels.ravel()))]
    return [int(i) for i in np.unique(labels)]


def keyframe_neighbours(
    n_frames: int, keyframes: Mapping[int, object]
) -> list[tuple[int | None, int | None]]:
    """(nearest keyframe at or before, nearest at or after) of every frame.

    >>> keyframe_neighbours(5, {1: None, 3: None})
    [(None, 1), (1, 1), (1, 3), (3, 3), (3, None)]
    """
    keys = sorted(keyframes)
    out: list[tuple[int | None, int | None]] = []
    left: int | None = None
    position = 0
    for index in range(n_frames):
        while position < len(keys) and keys[position] <= index:
            left = keys[position]
            position += 1
        right = index if index in keyframes else (keys[position] if position < len(keys) else None)
        out.append((left, right))
    return out


def check_episode(frames: Sequence[np.ndarray], keyframes: Mapping[int, np.ndarray], episode: str) -> None:
    """Refuse what cannot be propagated, naming the episode and the frame.

    An episode of one frame has nothing to carry a mask to; a keyframe outside the episode, or a
    mask of another size than its frame, or one that is not an integer label map, is an error of
    the input, not something to guess around.
    """
    if len(frames) < 2:
        raise PropagationError(
            episode, f"{len(frames)} frame(s)", "an episode needs 2 or more frames to propagate"
        )
    if not keyframes:
        raise PropagationError(episode, "keyframes", "no keyframe mask given")
    height, width = np.asarray(frames[0]).shape[:2]
    if min(height, width) < MIN_SIDE_PX:
        raise PropagationError(
            episode,
            "frame 0",
            f"is {width}x{height}; optical flow needs frames of {MIN_SIDE_PX} px or more a side",
        )
    for index, labels in keyframes.items():
        if not 0 <= index < len(frames):
            raise PropagationError(
                episode, f"keyframe {index}", f"is not a frame of the episode (frames 0..{len(frames) - 1})"
            )
        labels = np.asarray(labels)
        if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
            raise PropagationError(
                episode,
                f"frame {index}",
                f"keyframe mask must be a 2-D integer label map, got {labels.dtype} {labels.shape}",
            )
        shape = np.asarray(frames[index]).shape[:2]
        if labels.shape != shape:
            raise PropagationError(
                episode,
                f"frame {index}",
                f"keyframe mask is {labels.shape[1]}x{labels.shape[0]}, the frame {shape[1]}x{shape[0]}",
            )

"""The CPU backend: masks carried from keyframes with OpenCV's DIS optical flow.

A frame between two keyframes gets each keyframe's label map warped onto it by the dense flow
from the frame to that keyframe (DIS, Kroeger et al. 2016: coarse-to-fine patch search, fast
on a CPU). Where the flow of the frame to the keyframe and back does not return to where it
started (the forward-backward test of Sundaram et al. 2010) the pixel was occluded in one of
the two, and that side's vote counts for little; elsewhere the nearer keyframe outvotes the
farther one. Labels are warped as one soft channel per id (bilinear), so an edge lands between
pixels as the flow says instead of snapping to the nearest one.

Ids are kept as they are: a semantic class map, an instance map, or a 0/255 mask all work, and
an id that is the same object in two keyframes is merged from both sides.

A blob moving 2 px right per frame, labelled on frames 0 and 2, is found 2 px right on frame 1:

>>> import cv2, numpy as np
>>> blob = cv2.GaussianBlur(cv2.circle(np.zeros((64, 64), np.uint8), (30, 32), 10, 255, -1), (9, 9), 3)
>>> frames = [np.dstack([np.roll(blob, 2 * i, axis=1)] * 3) for i in range(3)]
>>> key = np.where(blob > 128, 3, 0).astype(np.uint8)
>>> out = FlowPropagator().propagate(frames, {0: key, 2: np.roll(key, 4, axis=1)})
>>> [f.sources for f in out], [int(x) for x in np.nonzero((out[1].labels == 3).any(0))[0][[0, -1]]]
([(0,), (0, 2), (2,)], [23, 41])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from dataset_pipeline.episode_propagation.core import (
    PropagatedFrame,
    check_episode,
    keyframe_neighbours,
    present_ids,
)

#: Votes of a side whose flow fails the forward-backward test, against 1 for a consistent one.
OCCLUDED_WEIGHT = 0.05
#: The forward-backward test's tolerance: |f + b|^2 < ALPHA (|f|^2 + |b|^2) + BETA (pixels^2).
FB_ALPHA, FB_BETA = 0.01, 0.5
PRESETS = {"ultrafast": 0, "fast": 1, "medium": 2}


def gray(rgb: np.ndarray) -> np.ndarray:
    """The 8-bit grey image DIS reads."""
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb


def dis_flow(source: np.ndarray, target: np.ndarray, preset: str = "medium") -> np.ndarray:
    """(H, W, 2) float32 flow f with ``source(x) ~ target(x + f(x))``, from two grey images.

    >>> import cv2, numpy as np
    >>> a = cv2.GaussianBlur(cv2.circle(np.zeros((64, 64), np.uint8), (30, 32), 10, 255, -1), (9, 9), 3)
    >>> round(float(dis_flow(a, np.roll(a, 3, axis=1))[32, 30, 0]))
    3
    """
    import cv2

    dis = cv2.DISOpticalFlow_create(PRESETS[preset])  # type: ignore[attr-defined]
    return dis.calc(source, target, None)


def sample_grid(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap's maps that read, at each pixel x, the other image at x + flow(x)."""
    h, w = flow.shape[:2]
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.arange(h, dtype=np.float32)[:, None]
    return xs + flow[..., 0], ys + flow[..., 1]


def fb_consistent(forward: np.ndarray, backward: np.ndarray, grid=None) -> np.ndarray:
    """Pixels whose flow to the other image and back returns within tolerance (bool (H, W)).

    ``forward`` goes from this image to the other one, ``backward`` from the other to this.
    A pixel sent outside the other image is inconsistent.
    """
    import cv2

    map_x, map_y = grid if grid is not None else sample_grid(forward)
    back = cv2.remap(
        backward, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=1e4
    )
    total = forward + back
    squared = (total**2).sum(-1)
    tolerance = FB_ALPHA * ((forward**2).sum(-1) + (back**2).sum(-1)) + FB_BETA
    h, w = forward.shape[:2]
    inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    return (squared < tolerance) & inside


def warp_soft(labels: np.ndarray, ids: Sequence[int], flow: np.ndarray, grid=None) -> np.ndarray:
    """(len(ids), H, W) float32: each id's mask of ``labels`` read at x + flow(x), bilinear."""
    import cv2

    map_x, map_y = grid if grid is not None else sample_grid(flow)
    out = np.empty((len(ids), *flow.shape[:2]), np.float32)
    for start in range(0, len(ids), 4):  # remap takes up to 4 channels in one pass
        group = ids[start : start + 4]
        stacked = np.stack([(labels == label) for label in group], -1).astype(np.float32)
        warped = cv2.remap(stacked, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out[start : start + len(group)] = warped.reshape(*flow.shape[:2], len(group)).transpose(2, 0, 1)
    return out


def warp_labels(labels: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """A label map read at x + flow(x), each pixel the id whose soft warp is largest."""
    ids = present_ids(labels)
    soft = warp_soft(labels, ids, flow)
    return np.asarray(ids, dtype=labels.dtype)[soft.argmax(0)]


@dataclass
class FlowPropagator:
    """DIS optical flow from the nearest keyframe on each side, combined by forward-backward consistency."""

    preset: str = "medium"
    name: str = "flow"

    def __post_init__(self) -> None:
        import cv2

        if self.preset not in PRESETS:
            raise ValueError(f"DIS preset {self.preset!r} is not one of {sorted(PRESETS)}")
        self.model_version = f"opencv-{cv2.__version__}-dis-{self.preset}"

    def propagate(
        self, frames: Sequence[np.ndarray], keyframes: Mapping[int, np.ndarray], episode: str = "episode"
    ) -> list[PropagatedFrame]:
        """Every frame's label map: keyframes as given, the others from their nearest keyframes.

        Frames are read one at a time (a lazy sequence keeps memory flat in episode length);
        a keyframe's grey image is kept while frames near it are done.
        """
        check_episode(frames, keyframes, episode)
        grays: dict[int, np.ndarray] = {}
        out: list[PropagatedFrame] = []
        for index, (left, right) in enumerate(keyframe_neighbours(len(frames), keyframes)):
            if index in keyframes:
                out.append(PropagatedFrame.keyframe(index, keyframes[index]))
                continue
            for k in list(grays):  # keep only the keyframes this frame and later ones use
                if k not in (left, right):
                    del grays[k]
            here = gray(frames[index])
            sides = [k for k in (left, right) if k is not None]
            votes, ids = self._votes(here, sides, keyframes, grays, frames, index)
            out.append(combine_votes(index, votes, ids, sides, keyframes[sides[0]].dtype))
        return out

    def _votes(self, here, sides, keyframes, grays, frames, index):
        ids = sorted({i for k in sides for i in present_ids(keyframes[k])})
        votes = np.zeros((len(ids), *here.shape), np.float32)
        for k in sides:
            if k not in grays:
                grays[k] = gray(frames[k])
            to_key = dis_flow(here, grays[k], self.preset)
            from_key = dis_flow(grays[k], here, self.preset)
            grid = sample_grid(to_key)
            consistent = fb_consistent(to_key, from_key, grid)
            weight = np.where(consistent, np.float32(1.0), np.float32(OCCLUDED_WEIGHT)) / np.float32(
                abs(index - k)
            )
            votes += warp_soft(keyframes[k], ids, to_key, grid) * weight
        return votes, ids


def combine_votes(
    index: int, votes: np.ndarray, ids: Sequence[int], sides: Sequence[int], dtype: np.dtype
) -> PropagatedFrame:
    """A frame's label map from per-id votes; confidence is the winner's share of the votes,
    averaged over the pixels some side calls foreground."""
    winner = votes.argmax(0)
    labels = np.asarray(ids, dtype=dtype)[winner]
    total = votes.sum(0) + 1e-6
    share = np.take_along_axis(votes, winner[None], 0)[0] / total
    background = [k for k, i in enumerate(ids) if i == 0]
    foreground = total > 1e-3 if not background else (votes[background[0]] / total) < 0.999
    per_id = {
        int(i): round(float(share[labels == i].mean()), 4) for i in ids if i != 0 and (labels == i).any()
    }
    confidence = round(float(share[foreground].mean()), 4) if foreground.any() else 1.0
    return PropagatedFrame(
        index, labels, tuple(sides), min(abs(index - k) for k in sides), confidence, per_id
    )

"""episode_propagation: reviewed keyframe masks carried through each episode, checked across frames.

* ``keyframes.py`` - which frames people label first (every N-th, more where the scene moves fast);
* ``flow.py`` - the CPU backend: OpenCV DIS optical flow from the keyframes on both sides;
* ``sam2_video.py`` - the GPU backend: sam2's video predictor started from the keyframe masks;
* ``consistency.py`` - temporal consistency: flow-warped IoU of consecutive class maps, flicker;
* ``batch.py`` - a batch's episodes propagated, as the stage does it;
* ``folder.py`` - one episode of files on disk, as the ``propagate`` command does it;
* ``checks.py`` - the gating checks' verdicts.
"""

from __future__ import annotations

from dataset_pipeline.episode_propagation.core import PropagatedFrame, PropagationError, Propagator
from dataset_pipeline.episode_propagation.keyframes import KeyframeSettings, choose_keyframes

#: The blocking check's floor on the mean warped IoU, by category: deformable and thin classes
#: change shape or are a few pixels wide, so their overlap frame to frame is lower when right.
DEFAULT_CONSISTENCY_THRESHOLDS: dict[str, float] = {
    "rigid": 0.7,
    "surface": 0.8,
    "deformable": 0.6,
    "thin": 0.5,
}
BACKENDS: tuple[str, ...] = ("flow", "sam2")


def make_propagator(
    backend: str,
    *,
    checkpoint: str | None = None,
    model_config: str | None = None,
    device: str = "auto",
    flow_preset: str = "medium",
    offload: bool = False,
) -> Propagator:
    """The backend by name; ``sam2`` needs a checkpoint (the pipeline never runs random weights)."""
    if backend == "flow":
        from dataset_pipeline.episode_propagation.flow import FlowPropagator

        return FlowPropagator(flow_preset)
    if backend == "sam2":
        from dataset_pipeline.episode_propagation.sam2_video import DEFAULT_VIDEO_CONFIG, Sam2VideoPropagator

        if not checkpoint:
            raise ValueError("the sam2 propagation backend needs a checkpoint (a local .pt file)")
        return Sam2VideoPropagator(model_config or DEFAULT_VIDEO_CONFIG, checkpoint, device, offload=offload)
    raise ValueError(f"propagation backend {backend!r} is not one of {BACKENDS}")


__all__ = [
    "BACKENDS",
    "DEFAULT_CONSISTENCY_THRESHOLDS",
    "KeyframeSettings",
    "PropagatedFrame",
    "PropagationError",
    "Propagator",
    "choose_keyframes",
    "make_propagator",
]

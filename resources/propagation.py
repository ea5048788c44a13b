"""Episode propagation's settings as a Dagster resource: keyframes, backend, consistency gate."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from dataset_pipeline.episode_propagation import DEFAULT_CONSISTENCY_THRESHOLDS, KeyframeSettings
from resources.sam2 import Sam2Resource


class PropagationSettings(ConfigurableResource):
    """Which frames people label first, how masks are carried to the rest, and the gate on them.

    ``backend``: ``auto`` is sam2's video predictor when the ``sam2`` resource has a checkpoint
    (the same SAM 2.1 checkpoint serves images and video), else DIS optical flow on the CPU.
    """

    backend: str = Field(default="auto", description="auto, flow or sam2")
    keyframe_every: int = Field(default=5, description="Every N-th frame of an episode is a keyframe")
    max_motion_px: float = Field(
        default=40.0, description="A frame is a keyframe once the motion since the last one passes this"
    )
    min_episode_frames: int = Field(
        default=12, description="Shorter episodes are labelled whole (no propagation round)"
    )
    flow_preset: str = Field(default="medium", description="OpenCV DIS preset: ultrafast, fast, medium")
    sam2_video_config: str | None = Field(
        default=None, description="sam2 config of the video predictor; unset = the sam2 resource's"
    )
    offload_to_cpu: bool = Field(default=False, description="sam2: keep video frames and state in CPU memory")
    consistency_thresholds: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_CONSISTENCY_THRESHOLDS),
        description="Blocking check: mean warped IoU per episode and class, by the class's category",
    )
    min_area_px: int = Field(default=50, description="Classes smaller than this in a frame are not scored")

    def keyframes(self) -> KeyframeSettings:
        return KeyframeSettings(self.keyframe_every, self.max_motion_px, self.min_episode_frames)

    def backend_for(self, sam2: Sam2Resource) -> str:
        if self.backend not in ("auto", "flow", "sam2"):
            raise ValueError(f"propagation backend {self.backend!r} is not auto, flow or sam2")
        if self.backend == "sam2" and not sam2.uses_sam2:
            raise ValueError("propagation backend 'sam2' needs the sam2 resource's checkpoint_path")
        return "sam2" if self.backend == "sam2" or (self.backend == "auto" and sam2.uses_sam2) else "flow"

    def get_propagator(self, sam2: Sam2Resource):  # -> dataset_pipeline.episode_propagation.Propagator
        from dataset_pipeline.episode_propagation import make_propagator

        return make_propagator(
            self.backend_for(sam2),
            checkpoint=sam2.checkpoint_path,
            model_config=self.sam2_video_config or sam2.model_config_name,
            device=sam2.device,
            flow_preset=self.flow_preset,
            offload=self.offload_to_cpu,
        )

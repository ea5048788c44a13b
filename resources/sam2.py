"""The pre-mask model as a Dagster resource: SAM 2 when a checkpoint is configured, else classical."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr

from dataset_pipeline.sam2_premasks.backends import PremaskBackend
from dataset_pipeline.sam2_premasks.batch import DEFAULT_SCORE_THRESHOLD
from dataset_pipeline.sam2_premasks.sam2 import DEFAULT_MODEL_CONFIG


class Sam2Resource(ConfigurableResource):
    """SAM 2 configuration. Weights are never downloaded: ``checkpoint_path`` is a local file.

    Without a checkpoint the classical backend (OpenCV GrabCut for prompts, Felzenszwalb
    without) makes the masks, and every mask records ``backend = classical``.
    """

    model_config_name: str = Field(
        default=DEFAULT_MODEL_CONFIG,
        description="sam2 config, e.g. configs/sam2.1/sam2.1_hiera_{t,s,b+,l}.yaml",
    )
    checkpoint_path: str | None = Field(default=None, description="Local .pt file; unset = classical backend")
    device: str = Field(default="auto", description="auto (CUDA when present), cuda, cuda:1, cpu")
    bf16: bool = Field(default=True, description="bf16 autocast on CUDA")
    score_threshold: float = Field(
        default=DEFAULT_SCORE_THRESHOLD, description="Masks under it are marked rejected"
    )
    image_batch_size: int = Field(default=4, description="Images per image-encoder batch")
    points_per_side: int = Field(default=16, description="Automatic generation: point grid per side")
    pred_iou_thresh: float = 0.7
    stability_score_thresh: float = 0.9
    grabcut_iterations: int = 2
    grabcut_max_side: int = 200

    _backend: PremaskBackend | None = PrivateAttr(default=None)

    @property
    def uses_sam2(self) -> bool:
        return bool(self.checkpoint_path)

    def backend_note(self) -> str:
        """Which backend makes the masks and why, for the UI."""
        if self.uses_sam2:
            return f"SAM 2 ({self.model_config_name}, checkpoint {self.checkpoint_path})"
        return "classical (OpenCV GrabCut / Felzenszwalb): no SAM 2 checkpoint_path is configured"

    def get_backend(self) -> PremaskBackend:
        if self._backend is None:
            if self.uses_sam2:
                from dataset_pipeline.sam2_premasks.sam2 import Sam2Backend

                self._backend = Sam2Backend(
                    self.model_config_name,
                    self.checkpoint_path,
                    device=self.device,
                    bf16=self.bf16,
                    automatic={
                        "points_per_side": self.points_per_side,
                        "pred_iou_thresh": self.pred_iou_thresh,
                        "stability_score_thresh": self.stability_score_thresh,
                    },
                )
            else:
                from dataset_pipeline.sam2_premasks.classical import ClassicalBackend

                self._backend = ClassicalBackend(
                    iterations=self.grabcut_iterations, max_side=self.grabcut_max_side
                )
        return self._backend

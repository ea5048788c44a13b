"""The pre-mask models as a Dagster resource: SAM 2 when a checkpoint is configured, else classical;
and the open-vocabulary detector whose boxes prompt it, when a detector folder is configured."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr

from dataset_pipeline.sam2_premasks.backends import PremaskBackend
from dataset_pipeline.sam2_premasks.batch import DEFAULT_SCORE_THRESHOLD
from dataset_pipeline.sam2_premasks.detector import (
    DEFAULT_DETECTOR_THRESHOLD,
    DEFAULT_MAX_DETECTIONS,
    DEFAULT_NMS_IOU,
    Detector,
)
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
    compile_encoder: bool = Field(
        default=False, description="torch.compile SAM 2's image encoder (CUDA; the first batch compiles)"
    )
    detector_path: str | None = Field(
        default=None,
        description="Local OWLv2 folder (transformers save_pretrained: config, weights, processor); "
        "unset = images without prompts.csv rows get automatic, unclassed masks",
    )
    detector_threshold: float = Field(
        default=DEFAULT_DETECTOR_THRESHOLD,
        description="Detector score a box needs (a class's detection_threshold in the taxonomy wins)",
    )
    detector_nms_iou: float = Field(default=DEFAULT_NMS_IOU, description="NMS IoU across classes")
    detector_max_boxes: int = Field(default=DEFAULT_MAX_DETECTIONS, description="Boxes kept per image")

    _backend: PremaskBackend | None = PrivateAttr(default=None)
    _detector: Detector | None = PrivateAttr(default=None)

    @property
    def uses_sam2(self) -> bool:
        return bool(self.checkpoint_path)

    def backend_note(self) -> str:
        """Which backend makes the masks and why, for the UI."""
        if self.uses_sam2:
            return f"SAM 2 ({self.model_config_name}, checkpoint {self.checkpoint_path})"
        return "classical (OpenCV GrabCut / Felzenszwalb): no SAM 2 checkpoint_path is configured"

    def detector_note(self) -> str:
        """Which detector prompts the images the upload has no prompts for, or what to configure."""
        if self.detector_path:
            return f"OWLv2 ({self.detector_path}), threshold {self.detector_threshold}, taxonomy prompts"
        return (
            "none: images without prompts.csv rows get automatic masks without a class "
            "(set detector_path to a local OWLv2 folder for classed pre-masks)"
        )

    def get_detector(self) -> Detector | None:
        """The configured detector (built once), or None without ``detector_path``."""
        if self._detector is None and self.detector_path:
            from dataset_pipeline.sam2_premasks.detector import OwlDetector

            self._detector = OwlDetector(
                self.detector_path,
                device=self.device,
                threshold=self.detector_threshold,
                nms_iou=self.detector_nms_iou,
                max_detections=self.detector_max_boxes,
                bf16=self.bf16,
            )
        return self._detector

    def get_backend(self) -> PremaskBackend:
        if self._backend is None:
            if self.uses_sam2:
                from dataset_pipeline.sam2_premasks.sam2 import Sam2Backend

                self._backend = Sam2Backend(
                    self.model_config_name,
                    self.checkpoint_path,
                    device=self.device,
                    bf16=self.bf16,
                    compile_encoder=self.compile_encoder,
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

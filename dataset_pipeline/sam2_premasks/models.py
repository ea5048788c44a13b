"""The pre-mask models from their settings: one place that the Dagster resource, the ML backend
(``dataset-pipeline ml-backend``) and the CVAT function all build them from, so an annotator's
clicks meet the same model, checkpoint and detector as the batch pre-masks.

Nothing is downloaded: the SAM 2 checkpoint is a local ``.pt`` file and the detector a local
``save_pretrained`` folder. The environment variables are read here only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from dataset_pipeline.sam2_premasks.backends import PremaskBackend
from dataset_pipeline.sam2_premasks.detector import (
    DEFAULT_DETECTOR_THRESHOLD,
    DEFAULT_MAX_DETECTIONS,
    DEFAULT_NMS_IOU,
    Detector,
)
from dataset_pipeline.sam2_premasks.sam2 import DEFAULT_MODEL_CONFIG

CHECKPOINT_VARIABLE = "DATASET_PIPELINE_SAM2_CHECKPOINT"
CONFIG_VARIABLE = "DATASET_PIPELINE_SAM2_CONFIG"
DETECTOR_VARIABLE = "DATASET_PIPELINE_DETECTOR"


@dataclass
class PremaskModels:
    """SAM 2 (or classical without a checkpoint) and the optional detector, built once on first use."""

    checkpoint_path: str | None = None
    model_config_name: str = DEFAULT_MODEL_CONFIG
    device: str = "auto"
    bf16: bool = True
    compile_encoder: bool = False
    points_per_side: int = 16
    pred_iou_thresh: float = 0.7
    stability_score_thresh: float = 0.9
    grabcut_iterations: int = 2
    grabcut_max_side: int = 200
    detector_path: str | None = None
    detector_threshold: float = DEFAULT_DETECTOR_THRESHOLD
    detector_nms_iou: float = DEFAULT_NMS_IOU
    detector_max_boxes: int = DEFAULT_MAX_DETECTIONS
    _backend: PremaskBackend | None = field(default=None, repr=False)
    _detector: Detector | None = field(default=None, repr=False)

    @classmethod
    def from_environment(cls, **overrides) -> PremaskModels:
        """Settings from DATASET_PIPELINE_SAM2_CHECKPOINT / _SAM2_CONFIG / _DETECTOR; ``overrides``
        that are not None win."""
        values: dict[str, object] = {
            "checkpoint_path": os.environ.get(CHECKPOINT_VARIABLE) or None,
            "model_config_name": os.environ.get(CONFIG_VARIABLE) or DEFAULT_MODEL_CONFIG,
            "detector_path": os.environ.get(DETECTOR_VARIABLE) or None,
        }
        values |= {k: v for k, v in overrides.items() if v is not None}
        return cls(**values)  # type: ignore[arg-type]

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
            f"(set detector_path, env {DETECTOR_VARIABLE}, to a local OWLv2 folder for classed pre-masks)"
        )

    def backend(self):  # -> Sam2Backend | ClassicalBackend (both interactive too)
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

    def detector(self) -> Detector | None:
        """The configured detector, or None without ``detector_path``."""
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

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
from dataset_pipeline.sam2_premasks.models import PremaskModels
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

    _models: PremaskModels | None = PrivateAttr(default=None)

    def models(self) -> PremaskModels:
        """The models these settings describe (built on first use, once per resource)."""
        if self._models is None:
            fields = set(PremaskModels.__dataclass_fields__) - {"_backend", "_detector"}
            self._models = PremaskModels(**{name: getattr(self, name) for name in fields})
        return self._models

    @property
    def uses_sam2(self) -> bool:
        return bool(self.checkpoint_path)

    def backend_note(self) -> str:
        return self.models().backend_note()

    def detector_note(self) -> str:
        return self.models().detector_note()

    def get_detector(self) -> Detector | None:
        return self.models().detector()

    def get_backend(self) -> PremaskBackend:
        return self.models().backend()

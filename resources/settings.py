"""Project-wide rules that assets and their gating checks read alike."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from dataset_pipeline.captures import DEFAULT_MAX_PIXELS
from dataset_pipeline.validation import DEFAULT_LIGHTING


class CaptureRules(ConfigurableResource):
    """What an upload batch must satisfy to be pre-masked."""

    allowed_lighting: list[str] = Field(default=list(DEFAULT_LIGHTING))
    min_side_px: int = Field(default=64, description="Smallest accepted image width/height")
    max_side_px: int = Field(default=8192, description="Largest accepted image width/height")
    max_pixels: int = Field(
        default=DEFAULT_MAX_PIXELS, description="Images above this are quarantined unread"
    )
    max_quarantine_share: float = Field(
        default=0.05, description="Blocking check: share of a batch's images that may be quarantined"
    )

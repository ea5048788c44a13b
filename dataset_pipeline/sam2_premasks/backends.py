"""What every pre-mask backend takes and gives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Prompt:
    """A prompt for one object: a box ``(x0, y0, x1, y1)`` in pixels and/or a positive point."""

    class_id: int | None = None
    box: tuple[float, float, float, float] | None = None
    point: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.box is None and self.point is None:
            raise ValueError("a prompt needs a box or a point")

    @property
    def prompt_type(self) -> str:
        return "box" if self.box is not None else "point"


@dataclass(frozen=True)
class PredictedMask:
    """A mask a backend made, with its score in [0, 1]."""

    mask: np.ndarray  # bool (H, W)
    score: float
    prompt_type: str  # box / point / auto
    class_id: int | None = None
    rle: str | None = None  # the mask's COCO RLE when the backend encoded it already (on the GPU)


class PremaskBackend(Protocol):
    """A model that turns images (and prompts) into masks."""

    name: str  # "sam2" or "classical": recorded with every mask
    model_version: str
    device: str

    def predict(self, images: list[np.ndarray], prompts: list[list[Prompt]]) -> list[list[PredictedMask]]:
        """One mask per prompt, for a batch of RGB uint8 images."""
        ...

    def generate(self, image: np.ndarray) -> list[PredictedMask]:
        """Prompt-free masks for one RGB uint8 image."""
        ...

    def generate_batch(self, images: list[np.ndarray]) -> list[list[PredictedMask]]:
        """Prompt-free masks for several images (as the backend runs best: threads, or one by one)."""
        ...

"""One model serving annotators: clicks and boxes on an image → a mask, with each image's embedding cached.

The annotation tool calls back for every click; SAM 2's image encoder is the expensive half
(seconds on a CPU, tens of milliseconds on a GPU) and the prompt decoder the cheap one, so
the embedding of the last ``cache_size`` images is kept and a second click on the same image
runs the decoder only. The classical backend has no encoder: its cache holds the decoded
image (no second download). Batch predictions (a task opened with no click yet) are the
pipeline's own pre-masks: the detector's boxes for the taxonomy's classes through the same model.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from dataset_pipeline.sam2_premasks.backends import PredictedMask, PremaskBackend, Prompt
from dataset_pipeline.sam2_premasks.detector import Detector
from dataset_pipeline.taxonomy import Taxonomy


class InteractiveBackend(PremaskBackend, Protocol):
    """A pre-mask backend that can also cache an image and answer clicks on it."""

    def embed(self, image: np.ndarray) -> dict: ...

    def predict_interactive(
        self,
        embedding: dict,
        points: list[tuple[float, float]],
        point_labels: list[int],
        box: tuple[float, float, float, float] | None = None,
        class_id: int | None = None,
    ) -> PredictedMask: ...


@dataclass(frozen=True)
class InteractiveMask:
    """The answer to one click or box."""

    mask: np.ndarray  # bool (H, W)
    score: float
    cached: bool  # the image's embedding came from the cache
    seconds: float  # model time, download excluded


@dataclass(frozen=True)
class ClassedMask:
    """One batch prediction: a detector box's class and the mask it prompted."""

    class_id: int
    mask: np.ndarray
    score: float
    detector_score: float


class InteractiveSession:
    """A backend (and optional detector) behind a lock, with an LRU cache of image embeddings."""

    def __init__(
        self,
        backend: InteractiveBackend,
        taxonomy: Taxonomy,
        detector: Detector | None = None,
        cache_size: int = 16,
    ) -> None:
        self.backend = backend
        self.taxonomy = taxonomy
        self.detector = detector
        self.cache_size = cache_size
        self._embeddings: OrderedDict[str, tuple[dict, tuple[int, int]]] = OrderedDict()
        self._lock = threading.Lock()  # one model: requests take turns on it
        self.hits = 0
        self.misses = 0

    @property
    def model_version(self) -> str:
        detector = f"+{self.detector.model_version}" if self.detector is not None else ""
        return f"{self.backend.name}:{self.backend.model_version}{detector}"

    def embedding(self, key: str, load: Callable[[], np.ndarray]) -> tuple[dict, tuple[int, int], bool]:
        """The cached embedding of image ``key`` (loading and encoding it on a miss), its size, and
        whether it was cached."""
        with self._lock:
            if key in self._embeddings:
                self._embeddings.move_to_end(key)
                self.hits += 1
                embedding, size = self._embeddings[key]
                return embedding, size, True
        image = load()  # outside the lock: a slow download does not hold up other annotators
        with self._lock:
            embedding = self.backend.embed(image)
            size = (int(image.shape[0]), int(image.shape[1]))
            self._embeddings[key] = (embedding, size)
            while len(self._embeddings) > self.cache_size:
                self._embeddings.popitem(last=False)
            self.misses += 1
        return embedding, size, False

    def click(
        self,
        key: str,
        load: Callable[[], np.ndarray],
        points: list[tuple[float, float]],
        point_labels: list[int],
        box: tuple[float, float, float, float] | None = None,
        class_id: int | None = None,
    ) -> InteractiveMask:
        """The mask for clicks (label 1 positive, 0 negative) and/or a box, in the image's pixels."""
        started = time.perf_counter()
        embedding, (height, width), cached = self.embedding(key, load)
        for x, y in points:
            if not (0 <= x <= width and 0 <= y <= height):
                raise ValueError(f"click ({x:.1f}, {y:.1f}) is outside the {width}x{height} image")
        if box is not None:
            box = (max(0.0, box[0]), max(0.0, box[1]), min(float(width), box[2]), min(float(height), box[3]))
            if box[2] - box[0] < 1 or box[3] - box[1] < 1:
                raise ValueError(f"the box is empty inside the {width}x{height} image")
        with self._lock:
            predicted = self.backend.predict_interactive(embedding, points, point_labels, box, class_id)
        return InteractiveMask(predicted.mask, predicted.score, cached, time.perf_counter() - started)

    def classed_masks(self, images: list[np.ndarray]) -> list[list[ClassedMask]]:
        """Pre-masks with classes for images no one has clicked on yet: the detector's boxes through the
        backend. Empty lists without a detector (there is nothing to give a mask its class)."""
        if self.detector is None or not images:
            return [[] for _ in images]
        with self._lock:
            found = self.detector.detect(images, self.taxonomy)
            prompts = [[Prompt(class_id=d.class_id, box=d.box) for d in boxes] for boxes in found]
            predicted = self.backend.predict(images, prompts)
        return [
            [
                ClassedMask(d.class_id, m.mask, m.score, d.score)
                for d, m in zip(boxes, masks, strict=True)
                if m.mask.any()
            ]
            for boxes, masks in zip(found, predicted, strict=True)
        ]

"""Pre-mask one batch: every captured image through a backend, prompted where the upload has prompts.

An image without rows in ``prompts.csv`` is prompted by the detector's boxes when one is configured
(each class's text queries, :mod:`detector`), and gets automatic, unclassed masks otherwise or when
the detector finds nothing there. ``prompt_source`` says which, per mask.

A mask scoring under the threshold is kept but marked ``rejected``; an empty prediction is not
a pre-mask at all (it is counted as a failed prompt). The table is :data:`schemas.PREMASKS`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dataset_pipeline import layout, schemas
from dataset_pipeline.figures import contact_sheet, distinct_colour, overlay, png_bytes, spread, with_legend
from dataset_pipeline.images import iter_images
from dataset_pipeline.masks import encode_mask
from dataset_pipeline.sam2_premasks.backends import PredictedMask, PremaskBackend, Prompt
from dataset_pipeline.sam2_premasks.detector import Detection, Detector
from dataset_pipeline.sam2_premasks.prompts import read_prompts
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.taxonomy import Taxonomy

DEFAULT_SCORE_THRESHOLD = 0.7


@dataclass
class PremaskRun:
    """What :func:`premask_batch` made."""

    table: pd.DataFrame
    images: int
    prompted_images: int
    failed_prompts: int
    seconds: float
    previews: list[tuple[str, np.ndarray, list[PredictedMask]]] = field(default_factory=list)
    prompted_without_kept: list[str] = field(default_factory=list)
    detector: str | None = None  # the detector's model_version, when one ran
    detected_images: int = 0  # images the detector found at least one box in
    detections: list[tuple[str, Detection]] = field(default_factory=list)  # (image id, box)
    detector_seconds: float = 0.0

    @property
    def masks(self) -> int:
        return len(self.table)

    @property
    def kept_share(self) -> float:
        return float((~self.table.rejected).mean()) if len(self.table) else 0.0


def premask_batch(
    store: DatasetStore,
    batch: str,
    backend: PremaskBackend,
    *,
    taxonomy: Taxonomy,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    image_batch_size: int = 4,
    previews: int = 6,
    detector: Detector | None = None,
) -> PremaskRun:
    """Pre-mask every captured image of ``batch`` with ``backend``. Reads only; returns the table.

    With a ``detector``, images the upload has no prompts for are prompted by its boxes (the
    batch's ``prompts.csv`` still wins where it names an image)."""
    captures = store.read_parquet(layout.captures_key(batch))
    prompts = read_prompts(store, batch, captures, taxonomy) or {}
    rows: list[dict[str, object]] = []
    kept_previews: list[tuple[str, np.ndarray, list[PredictedMask]]] = []
    preview_ids = {captures.image_id.iloc[i] for i in spread(len(captures), previews)}
    failed = 0
    prompted_without_kept: list[str] = []
    sources: dict[str, str] = {}  # image id -> prompts.csv / detector
    detector_scores: dict[str, list[float]] = {}
    detections: list[tuple[str, Detection]] = []
    detector_seconds = 0.0
    started = time.perf_counter()
    images = iter_images(store, captures)
    while True:
        chunk = [item for _, item in zip(range(image_batch_size), images, strict=False)]
        if not chunk:
            break
        chunk_started = time.perf_counter()
        image_prompts = {i: prompts[i] for i, _ in chunk if prompts.get(i)}
        sources |= dict.fromkeys(image_prompts, "prompts.csv")
        undetected = [(i, img) for i, img in chunk if i not in image_prompts]
        if detector is not None and undetected:
            detector_started = time.perf_counter()
            found = detector.detect([img for _, img in undetected], taxonomy)
            detector_seconds += time.perf_counter() - detector_started
            for (image_id, _), boxes in zip(undetected, found, strict=True):
                if boxes:
                    image_prompts[image_id] = [Prompt(class_id=d.class_id, box=d.box) for d in boxes]
                    detector_scores[image_id] = [d.score for d in boxes]
                    sources[image_id] = "detector"
                    detections += [(image_id, d) for d in boxes]
        prompted = [(i, img) for i, img in chunk if image_prompts.get(i)]
        predictions: dict[str, list[PredictedMask]] = {}
        if prompted:
            outputs = backend.predict([img for _, img in prompted], [image_prompts[i] for i, _ in prompted])
            predictions.update({i: out for (i, _), out in zip(prompted, outputs, strict=True)})
        unprompted = [(i, img) for i, img in chunk if i not in predictions]
        if unprompted:
            outputs = backend.generate_batch([img for _, img in unprompted])
            predictions.update({i: out for (i, _), out in zip(unprompted, outputs, strict=True)})
        seconds_per_image = (time.perf_counter() - chunk_started) / len(chunk)
        for image_id, image in chunk:
            source = sources.get(image_id, "auto")
            box_scores: list[float | None] = list(detector_scores.get(image_id, []))
            box_scores = box_scores or [None] * len(predictions[image_id])
            made = [(m, d) for m, d in zip(predictions[image_id], box_scores, strict=True) if m.mask.any()]
            failed += len(predictions[image_id]) - len(made)
            if image_id in prompts and not any(m.score >= score_threshold for m, _ in made):
                prompted_without_kept.append(image_id)
            for number, (predicted, detector_score) in enumerate(made):
                rows.append(
                    {
                        "premask_id": f"{image_id}#p{number}",
                        "image_id": image_id,
                        "class_id": predicted.class_id,
                        "height": int(image.shape[0]),
                        "width": int(image.shape[1]),
                        "rle": predicted.rle or encode_mask(predicted.mask),
                        "score": float(predicted.score),
                        "prompt_type": predicted.prompt_type,
                        "backend": backend.name,
                        "model_version": backend.model_version,
                        "seconds": seconds_per_image / max(1, len(made)),
                        "rejected": bool(predicted.score < score_threshold),
                        "prompt_source": source,
                        "detector": detector.model_version if source == "detector" and detector else "",
                        "detector_score": detector_score,
                    }
                )
            if image_id in preview_ids:
                kept_previews.append((image_id, image, [m for m, _ in made]))
    table = schemas.PREMASKS.frame(rows)
    return PremaskRun(
        table=table,
        images=len(captures),
        prompted_images=sum(1 for i in captures.image_id if prompts.get(i)),
        failed_prompts=failed,
        seconds=time.perf_counter() - started,
        previews=kept_previews,
        prompted_without_kept=prompted_without_kept,
        detector=detector.model_version if detector is not None else None,
        detected_images=len(detector_scores),
        detections=detections,
        detector_seconds=detector_seconds,
    )


def class_counts(premasks: pd.DataFrame, taxonomy: Taxonomy) -> pd.DataFrame:
    """Pre-masks per class: total, from detector boxes, kept, rejected, mean score, mean detector
    score (rows in taxonomy order; 'unclassed' last)."""
    names = premasks.class_id.map(lambda c: taxonomy.by_id(int(c)).name if pd.notna(c) else "unclassed")
    table = (
        premasks.assign(class_name=names, from_detector=premasks.prompt_source == "detector")
        .groupby("class_name")
        .agg(
            masks=("premask_id", "size"),
            detector_boxes=("from_detector", "sum"),
            rejected=("rejected", "sum"),
            mean_score=("score", "mean"),
            mean_detector_score=("detector_score", "mean"),
        )
    )
    table["kept"] = table.masks - table.rejected
    order = [n for n in [*taxonomy.names, "unclassed"] if n in table.index]
    columns = ["masks", "detector_boxes", "kept", "rejected", "mean_score", "mean_detector_score"]
    return table.loc[order, columns].round({"mean_score": 3, "mean_detector_score": 3}).reset_index()


def overlays_png(run: PremaskRun, taxonomy: Taxonomy, score_threshold: float) -> bytes:
    """The preview images with their kept pre-masks drawn over them, in their class colours
    (automatic masks without a class: distinct colours), the detector's boxes outlined in the same
    colours, captioned with the file names, and the key of the classes shown."""
    import cv2

    palette = taxonomy.palette()
    boxes: dict[str, list[Detection]] = {}
    for image_id, detection in run.detections:
        boxes.setdefault(image_id, []).append(detection)
    tiles, captions, shown, unclassed = [], [], set(), False
    for image_id, image, masks in run.previews:
        kept = [m for m in masks if m.score >= score_threshold]
        colours = [
            palette[m.class_id] if m.class_id is not None else distinct_colour(k) for k, m in enumerate(kept)
        ]
        shown |= {m.class_id for m in kept if m.class_id is not None}
        unclassed |= any(m.class_id is None for m in kept)
        tile = overlay(image, [m.mask for m in kept], colours)
        for detection in boxes.get(image_id, []):  # the detector's box beside the mask it prompted
            x0, y0, x1, y1 = (int(round(v)) for v in detection.box)
            cv2.rectangle(tile, (x0, y0), (x1 - 1, y1 - 1), palette[detection.class_id], 2)
        tiles.append(tile)
        captions.append(image_id.rsplit("/", 1)[-1])
    key = [c for c in taxonomy.foreground if c.id in shown]
    labels = [c.name for c in key] + (["no class (automatic): one colour each"] if unclassed else [])
    colours = [c.rgb for c in key] + ([distinct_colour(0)] if unclassed else [])
    return png_bytes(with_legend(contact_sheet(tiles, captions, columns=3, cell=320), labels, colours))

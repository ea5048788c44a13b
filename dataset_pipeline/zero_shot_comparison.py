"""zero_shot_comparison: what the human labels are worth over prompt-free SAM 2.

On the test split, prompt-free masks (SAM 2's automatic generator, or without a checkpoint
the classical Felzenszwalb segmenter, named as such) each take the class of the majority of
their ground-truth pixels - an *oracle* labelling that favours zero-shot - and are painted
largest first; uncovered pixels are background. The mIoU of that map, at the baseline's
evaluation size, is the zero-shot score; the annotation value is baseline mIoU minus it.
"""

from __future__ import annotations

import itertools
import json

import numpy as np

from dataset_pipeline import layout
from dataset_pipeline.annotation_corpus import semantic_class_map
from dataset_pipeline.baseline_model import images_by_split, reference_labels
from dataset_pipeline.images import iter_images
from dataset_pipeline.metrics import confusion_matrix, mean_iou, per_class_iou
from dataset_pipeline.sam2_premasks.backends import PremaskBackend
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.taxonomy import Taxonomy
from dataset_pipeline.verdicts import Verdict


def oracle_label_map(masks: list[np.ndarray], truth: np.ndarray) -> np.ndarray:
    """Paint each mask (largest first) with the majority true class of its pixels.

    >>> truth = np.array([[1, 1, 0], [2, 2, 2]])
    >>> a = np.array([[1, 1, 1], [0, 0, 0]], bool)   # mostly class 1
    >>> b = np.array([[0, 0, 0], [1, 1, 0]], bool)   # class 2
    >>> oracle_label_map([a, b], truth).tolist()
    [[1, 1, 1], [2, 2, 0]]
    """
    out = np.zeros(truth.shape, dtype=np.uint8)
    for mask in sorted(masks, key=lambda m: -int(m.sum())):
        if not mask.any():
            continue
        classes = np.bincount(truth[mask].astype(np.int64))
        out[mask] = int(np.argmax(classes))
    return out


def evaluate_zero_shot(
    store: DatasetStore, taxonomy: Taxonomy, backend: PremaskBackend, baseline: dict
) -> dict:
    """The zero-shot score on the test split, scored as the baseline was (its evaluation size,
    the same reference labels), and the annotation value against the baseline's mIoU."""
    import cv2

    size = int(baseline["config"]["image_size"])
    test = images_by_split(store)["test"]
    by_image = dict(tuple(reference_labels(store).groupby("image_id", sort=False)))
    num_classes = len(taxonomy.classes)
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    masks_made = 0
    pairs = zip(iter_images(store, test), test.itertuples(), strict=True)
    while chunk := list(itertools.islice(pairs, 4)):  # the backend generates for a few images at once
        for ((image_id, _), row), made in zip(
            chunk, backend.generate_batch([rgb for (_, rgb), _ in chunk]), strict=True
        ):
            truth = (
                semantic_class_map(by_image[image_id], row.height, row.width)
                if image_id in by_image
                else np.zeros((row.height, row.width), np.uint8)
            )
            masks = [m.mask for m in made]
            masks_made += len(masks)
            predicted = oracle_label_map(masks, truth)
            small_pred = cv2.resize(predicted, (size, size), interpolation=cv2.INTER_NEAREST)
            small_truth = cv2.resize(truth, (size, size), interpolation=cv2.INTER_NEAREST)
            cm += confusion_matrix(small_pred, small_truth, num_classes)
    zero_shot = mean_iou(cm)
    return {
        "backend": backend.name,
        "model_version": backend.model_version,
        "zero_shot_miou": round(zero_shot, 4),
        "baseline_miou": baseline["miou"],
        "annotation_value_points": round((baseline["miou"] - zero_shot) * 100, 2),
        "test_images": len(test),
        "masks": masks_made,
        "per_class_iou": {
            c.name: (round(float(v), 4) if v == v else None)
            for c, v in zip(taxonomy.classes, per_class_iou(cm), strict=True)
        },
        "labelling": "oracle: each mask takes the majority ground-truth class of its pixels (favours zero-shot)",
    }


def write_summary(store: DatasetStore, summary: dict) -> None:
    store.write_bytes(layout.ZERO_SHOT_KEY, json.dumps(summary, indent=2).encode())


def load_summary(store: DatasetStore) -> dict:
    return json.loads(store.read_bytes(layout.ZERO_SHOT_KEY))


def value_verdict(summary: dict, bar: float) -> Verdict:
    """The labels are worth at least ``bar`` mIoU points over zero-shot."""
    value = summary["annotation_value_points"]
    return Verdict(
        passed=value >= bar,
        summary=f"baseline {summary['baseline_miou']:.3f} - zero-shot ({summary['backend']}) "
        f"{summary['zero_shot_miou']:.3f} = {value:.1f} points (bar {bar:.0f})",
    )

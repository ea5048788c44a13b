"""zero_shot_comparison: what the human labels are worth over prompt-free SAM 2.

On the test split, prompt-free masks (SAM 2's automatic generator, or without a checkpoint
the classical Felzenszwalb segmenter, named as such) each take the class of the majority of
their ground-truth pixels - an *oracle* labelling that favours zero-shot - and are painted
largest first; uncovered pixels are background. The mIoU of that map, at the baseline's
evaluation size, is the zero-shot score; the annotation value is baseline mIoU minus it.
"""

from __future__ import annotations

import numpy as np


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

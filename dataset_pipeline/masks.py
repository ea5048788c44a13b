"""Mask codecs: COCO compressed RLE as the pipeline stores it between steps.

In tables a mask is three columns, ``height``, ``width`` and ``rle`` (the compressed
counts string that ``pycocotools.mask.encode(...)["counts"].decode()`` gives). Dense
arrays exist only inside a function.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def encode_mask(mask: np.ndarray) -> str:
    """Encode a 2-D boolean mask as a COCO compressed RLE counts string.

    >>> m = np.zeros((4, 5), dtype=bool); m[1:3, 2:4] = True
    >>> rle = encode_mask(m)
    >>> bool((decode_mask(rle, 4, 5) == m).all())
    True
    """
    from pycocotools import mask as mask_utils

    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return encoded["counts"].decode("ascii")


def decode_mask(rle: str, height: int, width: int) -> np.ndarray:
    """Decode a compressed RLE counts string to a (height, width) boolean array."""
    from pycocotools import mask as mask_utils

    decoded = mask_utils.decode({"size": [int(height), int(width)], "counts": rle.encode("ascii")})
    return decoded.astype(bool)


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight box ``(x0, y0, x1, y1)`` with exclusive x1/y1, or None for an empty mask.

    >>> m = np.zeros((4, 5), dtype=bool); m[1:3, 2:4] = True
    >>> mask_bbox(m)
    (2, 1, 4, 3)
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def rle_areas(heights: Iterable[int], widths: Iterable[int], rles: Iterable[str]) -> np.ndarray:
    """Pixel count of each compressed RLE, computed in RLE space (no dense masks).

    >>> m = np.zeros((4, 5), dtype=bool); m[1:3, 2:4] = True
    >>> rle_areas([4], [5], [encode_mask(m)]).tolist()
    [4]
    """
    from pycocotools import mask as mask_utils

    objects = [
        {"size": [int(h), int(w)], "counts": r.encode("ascii")}
        for h, w, r in zip(heights, widths, rles, strict=True)
    ]
    # pycocotools 2.0.11 overflows a uint8 counter above 255 objects per call: go in chunks.
    parts = [
        np.asarray(mask_utils.area(objects[i : i + 255]), dtype=np.int64) for i in range(0, len(objects), 255)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

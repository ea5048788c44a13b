"""CVAT's mask encoding: a mask shape as CVAT writes it in "CVAT for images 1.1" XML.

A CVAT mask shape is stored as run lengths over its bounding box: the box
``left, top, width, height`` (pixels, inclusive of the last row and column), and
``rle``, alternating counts of 0s and 1s over the box in row-major order, starting with
a count of 0s (which may be 0). CVAT's XML dumper writes the counts joined by ``", "``.
The encoding and decoding are cvat-sdk's own (``cvat_sdk.masks``), not a rewrite.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class CvatMaskError(ValueError):
    """A CVAT mask's run lengths or box do not fit the image."""


@dataclass(frozen=True)
class CvatMask:
    """A mask as CVAT writes it in XML."""

    rle: str
    left: int
    top: int
    width: int
    height: int


def mask_to_cvat(mask: np.ndarray) -> CvatMask:
    """Encode a non-empty boolean (H, W) mask as CVAT's box-relative run lengths.

    >>> m = np.zeros((4, 6), bool); m[1:3, 2:5] = True
    >>> mask_to_cvat(m)
    CvatMask(rle='0, 6', left=2, top=1, width=3, height=2)
    """
    from cvat_sdk.masks import encode_mask

    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    if not mask.any():
        raise CvatMaskError("an empty mask has no CVAT encoding (CVAT masks cover at least one pixel)")
    *counts, x1, y1, x2, y2 = encode_mask(mask.astype(bool))
    return CvatMask(
        rle=", ".join(str(int(c)) for c in counts),
        left=int(x1),
        top=int(y1),
        width=int(x2 - x1) + 1,
        height=int(y2 - y1) + 1,
    )


def cvat_to_mask(shape: CvatMask, image_height: int, image_width: int) -> np.ndarray:
    """Decode a CVAT mask shape to a boolean (image_height, image_width) array.

    Raises :class:`CvatMaskError` when the counts are not integers, the box leaves the
    image, or the counts do not add up to the box's area.
    """
    from cvat_sdk.masks import decode_mask

    try:
        counts = [int(v) for v in shape.rle.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise CvatMaskError(f"rle {shape.rle[:40]!r} is not a comma-separated list of integers") from None
    if any(c < 0 for c in counts):
        raise CvatMaskError("rle has a negative count")
    if shape.width <= 0 or shape.height <= 0:
        raise CvatMaskError(f"mask box {shape.width}x{shape.height} is empty")
    area = shape.width * shape.height
    if sum(counts) != area:
        raise CvatMaskError(
            f"rle counts add up to {sum(counts)} pixels; the {shape.width}x{shape.height} box has {area}"
        )
    right, bottom = shape.left + shape.width - 1, shape.top + shape.height - 1
    try:
        return decode_mask(
            [*counts, shape.left, shape.top, right, bottom],
            image_width=image_width,
            image_height=image_height,
        )
    except ValueError as exc:
        raise CvatMaskError(
            f"mask box left={shape.left} top={shape.top} width={shape.width} height={shape.height} "
            f"does not fit the {image_width}x{image_height} image ({exc})"
        ) from None

"""CVAT: "CVAT for images 1.1" XML with ``<mask>`` shapes, and the task's labels JSON.

A CVAT mask shape is stored as run lengths over its bounding box: the box
``left, top, width, height`` (pixels, inclusive of the last row and column), and
``rle``, alternating counts of 0s and 1s over the box in row-major order, starting with
a count of 0s (which may be 0). CVAT's XML dumper writes the counts joined by ``", "``.
The encoding and decoding are cvat-sdk's own (``cvat_sdk.masks``), not a rewrite.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.sax.saxutils import quoteattr

import numpy as np

from dataset_pipeline.taxonomy import Taxonomy

CVAT_XML_VERSION = "1.1"


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


@dataclass(frozen=True)
class CvatShape:
    """One mask shape on one image."""

    label: str
    mask: np.ndarray
    z_order: int = 0
    source: str = "semi-auto"
    occluded: bool = False


@dataclass(frozen=True)
class CvatImage:
    """One ``<image>`` of the XML: its frame id, file name (as the task knows it), size, shapes."""

    frame: int
    name: str
    width: int
    height: int
    shapes: list[CvatShape]


def labels_json(taxonomy: Taxonomy) -> bytes:
    """The labels of a CVAT task for this taxonomy, as CVAT's "Raw" label constructor takes them."""
    labels = [
        {"name": c.name, "color": c.colour, "type": "mask", "attributes": []} for c in taxonomy.foreground
    ]
    return json.dumps(labels, indent=2).encode("utf-8")


def annotations_xml(images: Iterable[CvatImage], taxonomy: Taxonomy, task_name: str) -> bytes:
    """A "CVAT for images 1.1" annotations file that CVAT's "Upload annotations" imports."""
    now = datetime.now(UTC).isoformat()
    label_lines = "\n".join(
        f"        <label>\n          <name>{_text(c.name)}</name>\n          <color>{c.colour}</color>\n"
        f"          <type>mask</type>\n          <attributes>\n          </attributes>\n        </label>"
        for c in taxonomy.foreground
    )
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        "<annotations>",
        f"  <version>{CVAT_XML_VERSION}</version>",
        "  <meta>",
        "    <task>",
        f"      <name>{_text(task_name)}</name>",
        "      <mode>annotation</mode>",
        f"      <created>{now}</created>",
        "      <labels>",
        label_lines,
        "      </labels>",
        "    </task>",
        f"    <dumped>{now}</dumped>",
        "  </meta>",
    ]
    for image in images:
        lines.append(
            f'  <image id="{image.frame}" name={quoteattr(image.name)} width="{image.width}" height="{image.height}">'
        )
        for shape in image.shapes:
            encoded = mask_to_cvat(shape.mask)
            lines.append(
                f"    <mask label={quoteattr(shape.label)} source={quoteattr(shape.source)} "
                f'occluded="{int(shape.occluded)}" rle="{encoded.rle}" left="{encoded.left}" '
                f'top="{encoded.top}" width="{encoded.width}" height="{encoded.height}" '
                f'z_order="{shape.z_order}">\n    </mask>'
            )
        lines.append("  </image>")
    lines.append("</annotations>\n")
    return "\n".join(lines).encode("utf-8")


def _text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

"""CVAT task files: "CVAT for images 1.1" XML with semi-auto ``<mask>`` shapes, and the labels JSON.

What annotation_tasks writes for a CVAT task holding the batch's images: the labels for the
task's raw label constructor, and pre-masks for "Upload annotations" (format "CVAT 1.1").
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.sax.saxutils import quoteattr

import numpy as np

from dataset_pipeline.formats.cvat.codec import mask_to_cvat
from dataset_pipeline.taxonomy import Taxonomy

CVAT_XML_VERSION = "1.1"


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


def annotations_xml(
    images: Iterable[CvatImage], taxonomy: Taxonomy, task_name: str, note: str | None = None
) -> bytes:
    """A "CVAT for images 1.1" annotations file that CVAT's "Upload annotations" imports; ``note``
    (why it holds no shape, say) is written as an XML comment a person reads."""
    now = datetime.now(UTC).isoformat()
    label_lines = "\n".join(
        f"        <label>\n          <name>{_text(c.name)}</name>\n          <color>{c.colour}</color>\n"
        f"          <type>mask</type>\n          <attributes>\n          </attributes>\n        </label>"
        for c in taxonomy.foreground
    )
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        *([f"<!-- {_text(note).replace('--', '- -')} -->"] if note else []),
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

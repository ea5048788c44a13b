"""COCO instances JSON (plain, or as CVAT's "COCO 1.0" export writes it) → annotations.

Segmentations may be polygons (lists of flat x,y lists) or RLE, compressed (a counts
string) or uncompressed (a counts list, as CVAT writes masks with ``iscrowd: 1``); RLE
runs are validated before decoding. ``iscrowd`` does not change how a mask is read. COCO
carries no annotator or time: the annotator is ``info.contributor`` if set, else the
configured default. ``attributes.occluded`` (CVAT) is accepted and not stored.
"""

from __future__ import annotations

import json

from dataset_pipeline.formats.importing import (
    AnnotationImportError,
    ImportOptions,
    ImportResult,
    annotations_frame,
    check_not_empty,
    load_json,
)
from dataset_pipeline.masks import polygons_to_rle, rle_from_coco

#: ``cvat-coco`` is CVAT's "COCO 1.0" export (its ``info`` names CVAT), ``coco`` any other.
FORMATS: tuple[str, ...] = ("cvat-coco", "coco")


def detect(head: bytes, document: object) -> str | None:
    """A JSON object with ``images`` and ``annotations``."""
    if isinstance(document, dict) and "annotations" in document and "images" in document:
        info = document.get("info") or {}
        return "cvat-coco" if "cvat" in json.dumps(info).lower() else "coco"
    return None


def read(data: bytes, options: ImportOptions, fmt: str = "coco") -> ImportResult:
    return import_coco(data, options, tool="cvat" if fmt == "cvat-coco" else "coco")


def import_coco(data: bytes, options: ImportOptions, tool: str = "coco") -> ImportResult:
    file = options.source_file
    document = load_json(data, file)
    if not isinstance(document, dict):
        raise AnnotationImportError(file, "document", "", "a COCO file is a JSON object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(document.get(key), list):
            raise AnnotationImportError(file, "document", key, "missing or not a list")
    info: dict = document["info"] if isinstance(document.get("info"), dict) else {}
    annotator = str(info.get("contributor") or options.default_annotator)
    created_at = info.get("date_created") or None
    tool_version = options.tool_version or (
        f"cvat-coco-{info.get('version', '1.0')}" if tool == "cvat" else None
    )

    categories = {}
    for number, category in enumerate(document["categories"]):
        record = f"categories[{number}]"
        if not isinstance(category, dict) or "id" not in category:
            raise AnnotationImportError(file, record, "id", "missing")
        categories[_id(category["id"], file, record, "id")] = (category.get("name"), record)
    images = {}
    for number, image in enumerate(document["images"]):
        record = f"images[{number}]"
        if not isinstance(image, dict):
            raise AnnotationImportError(file, record, "", "not an object")
        for key in ("id", "file_name", "width", "height"):
            if key not in image:
                raise AnnotationImportError(file, record, key, "missing")
        if not all(isinstance(image[k], int) and not isinstance(image[k], bool) for k in ("width", "height")):
            raise AnnotationImportError(file, record, "width", "width and height must be integers")
        images[_id(image["id"], file, record, "id")] = options.image(
            str(image["file_name"]), image["height"], image["width"], record, "file_name"
        )

    rows: list[dict[str, object]] = []
    skipped: list[str] = []
    per_image: dict[str, int] = {}
    for number, annotation in enumerate(document["annotations"]):
        record = f"annotations[{number}] (id {annotation.get('id') if isinstance(annotation, dict) else '?'})"
        if not isinstance(annotation, dict):
            raise AnnotationImportError(file, record, "", "not an object")
        if not _is_id(annotation.get("image_id")) or annotation.get("image_id") not in images:
            raise AnnotationImportError(
                file, record, "image_id", f"{annotation.get('image_id')!r} is not in images"
            )
        if not _is_id(annotation.get("category_id")) or annotation.get("category_id") not in categories:
            raise AnnotationImportError(
                file, record, "category_id", f"{annotation.get('category_id')!r} is not in categories"
            )
        ref = images[annotation["image_id"]]
        class_id = options.class_id(categories[annotation["category_id"]][0], record, "category_id → name")
        segmentation = annotation.get("segmentation")
        if segmentation in ([], None) and "bbox" in annotation:
            skipped.append(f"{record}: no segmentation (a box only)")
            continue
        try:
            if isinstance(segmentation, list):
                rle = polygons_to_rle(segmentation, ref.height, ref.width)
            elif isinstance(segmentation, dict):
                rle = rle_from_coco(segmentation, ref.height, ref.width)
            else:
                raise ValueError("missing (a list of polygons or an RLE object is needed)")
        except (ValueError, TypeError, OverflowError, IndexError) as exc:
            raise AnnotationImportError(
                file, record, "segmentation", str(exc) or type(exc).__name__
            ) from None
        check_not_empty(rle, ref.height, ref.width, file, record, "segmentation")
        index = per_image.get(ref.image_id, 0)
        per_image[ref.image_id] = index + 1
        rows.append(
            options.row(
                ref,
                annotation_id=f"{ref.image_id}#{annotator}#{tool}{annotation.get('id', index)}",
                annotator_id=annotator,
                class_id=class_id,
                rle=rle,
                z_order=_z_order(annotation.get("z_order"), file, record),
                created_at=created_at,
                seconds_spent=None,
                tool=tool,
                tool_version=tool_version,
            )
        )
    return ImportResult(annotations_frame(rows), skipped)


def _is_id(value: object) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _id(value: object, file: str, record: str, field_name: str) -> int | str:
    """A COCO id: an integer or a string (JSON lets anything through)."""
    if not isinstance(value, int | str) or isinstance(value, bool):
        raise AnnotationImportError(file, record, field_name, f"{value!r} is not an integer or string id")
    return value


def _z_order(value: object, file: str, record: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > 2**31:
        raise AnnotationImportError(file, record, "z_order", f"{value!r} is not an integer")
    return value

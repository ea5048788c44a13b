"""COCO instances JSON per split, masks as compressed RLE, as COCO's own tools read it.

``annotations/instances_<split>.json``; images under ``images/<split>/`` (``file_name`` is
the base name, the usual ``image_root`` + ``file_name`` join). Each instance: ``segmentation``
= ``{"size": [h, w], "counts": "<string>"}`` exactly as ``pycocotools.mask.encode`` gives it,
``area`` = its pixel count, ``bbox`` = ``pycocotools.mask.toBbox``, ``iscrowd`` = 0. Many
exporters mark every RLE instance ``iscrowd: 1``; COCOeval then treats those instances as
crowd regions and ignores them, so a model is never scored on them. Categories are the
taxonomy's classes with their ids (background, id 0, is not a category).
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from typing import Any

import numpy as np

from dataset_pipeline.formats.exporting import ReleaseFolder, validate_by_shard
from dataset_pipeline.formats.release_content import ImageRow, ReleaseContent
from dataset_pipeline.masks import decode_mask, rle_areas, rle_boxes

NAME = "coco"


#: The instance columns a COCO annotation is made of.
INSTANCE_COLUMNS = [
    "image_id",
    "class_id",
    "height",
    "width",
    "rle",
    "annotation_id",
    "annotator_id",
    "assistance",
    "review_status",
    "z_order",
]


def annotation_file(split: str) -> str:
    return f"annotations/instances_{split}.json"


#: Annotations are serialized this many images at a time (see :func:`split_json`).
IMAGES_PER_CHUNK = 32


def split_json(content: ReleaseContent, split: str) -> Iterator[str]:
    """The COCO document of one split as compact JSON, in pieces.

    The annotations are made and serialized a chunk of images at a time and the pieces are
    written to the file as they come, so neither the document's Python dicts (~4 KB per
    annotation) nor its whole text (~1 KB per annotation) is ever held at once.
    """
    info = dict(content.info)
    rows = list(content.iter_rows(split))
    number_of = {row.image_id: number for number, row in enumerate(rows, start=1)}
    document: dict = {
        "info": {
            "description": info.get("description", ""),
            "version": info.get("version", ""),
            "year": int(info.get("year", 0)),
            "contributor": info.get("contributor", ""),
            "url": info.get("url", ""),
            "date_created": info.get("date_created", ""),
        },
        "licenses": [{"id": 1, "name": info.get("license", ""), "url": info.get("license_url", "")}],
        "categories": [
            {"id": c.id, "name": c.name, "supercategory": c.category} for c in content.taxonomy.foreground
        ],
        "images": [
            {
                "id": number_of[row.image_id],
                "file_name": content.image_file(row).rsplit("/", 1)[1],
                "width": int(row.width),
                "height": int(row.height),
                "license": 1,
                "date_captured": str(row.capture_ts),
                "image_uid": row.image_id,
            }
            for row in rows
        ],
        "annotations": [],
    }
    yield json.dumps(document, separators=(",", ":")).removesuffix("]}")
    first = 1
    for offset in range(0, len(rows), IMAGES_PER_CHUNK):
        chunk = [row.image_id for row in rows[offset : offset + IMAGES_PER_CHUNK]]
        annotations = annotation_dicts(content.instance_columns(chunk, INSTANCE_COLUMNS), number_of, first)
        if annotations:
            yield ("," if first > 1 else "") + json.dumps(annotations, separators=(",", ":"))[1:-1]
            first += len(annotations)
    yield "]}"


def annotation_dicts(instances: dict[str, list], number_of: dict[str, int], first: int) -> list[dict]:
    """COCO annotations (ids from ``first``) of instance columns (:data:`INSTANCE_COLUMNS`):
    areas and boxes computed in RLE space, all at once."""
    areas = rle_areas(instances["height"], instances["width"], instances["rle"])
    boxes = rle_boxes(instances["height"], instances["width"], instances["rle"])
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).astype(float)
    columns = zip(
        [number_of[image_id] for image_id in instances["image_id"]],
        instances["class_id"],
        instances["height"],
        instances["width"],
        instances["rle"],
        instances["annotation_id"],
        instances["annotator_id"],
        instances["assistance"],
        instances["review_status"],
        instances["z_order"],
        areas.tolist(),
        xywh.tolist(),
        strict=True,
    )
    return [
        {
            "id": number,
            "image_id": image_number,
            "category_id": class_id,
            "segmentation": {"size": [height, width], "counts": rle},
            "area": area,
            "bbox": box,
            "iscrowd": 0,
            "attributes": {
                "annotation_uid": annotation_id,
                "annotator_id": annotator_id,
                "assistance": assistance,
                "review_status": review_status,
                "z_order": z_order,
            },
        }
        for number, (
            image_number,
            class_id,
            height,
            width,
            rle,
            annotation_id,
            annotator_id,
            assistance,
            review_status,
            z_order,
            area,
            box,
        ) in enumerate(columns, start=first)
    ]


def export(content: ReleaseContent, out: ReleaseFolder) -> list[str]:
    for split in content.splits:
        with out.new_local_file(annotation_file(split)) as path, open(path, "w", encoding="utf-8") as handle:
            handle.writelines(split_json(content, split))
    return [annotation_file(split) for split in content.splits]


def validate(content: ReleaseContent, out: ReleaseFolder) -> list[str]:
    """Each split loaded with ``pycocotools.coco.COCO``, every segmentation the corpus instance's
    RLE verbatim (:func:`validate_release`), and pycocotools decoding each of those RLE strings to
    the corpus mask bit for bit (:func:`validate_shard`): together, every mask read back with
    pycocotools equals the corpus's."""
    return validate_by_shard(validate_release, validate_shard, content, out)


def validate_shard(
    content: ReleaseContent, out: ReleaseFolder, split: str, shard: str, rows: list[ImageRow]
) -> list[str]:
    """pycocotools' ``decode`` of each of the shard's instances' RLE strings (what the split's
    file holds verbatim) against the corpus mask: the masks' reading, checked beside the exports,
    before the file is assembled. The instances of an image whose files the release shares with
    an earlier complete release (``out.skip_shared``) are left out: the same RLE strings, decoded
    by that release's check."""
    from pycocotools import mask as mask_utils

    shared = out.shared_files() if out.skip_shared else frozenset()
    ids = [row.image_id for row in rows if content.image_file(row) not in shared]
    cells = content.instance_columns(ids, ["image_id", "annotation_id", "height", "width", "rle"])
    problems: list[str] = []
    for image_id, uid, height, width, rle in zip(*cells.values(), strict=True):
        record = f"{annotation_file(split)}: annotation_uid {uid} (image {image_id})"
        try:
            truth = decode_mask(rle, height, width)
            mask = mask_utils.decode({"size": [int(height), int(width)], "counts": rle}).astype(bool)
        except (ValueError, TypeError) as exc:
            problems.append(f"{record}: its RLE cannot be decoded ({exc})")
            continue
        if not np.array_equal(mask, truth):
            problems.append(
                f"{record}: pycocotools decodes its RLE to a mask {int((mask != truth).sum())} pixels "
                "off the corpus mask"
            )
    return problems


def validate_release(content: ReleaseContent, out: ReleaseFolder) -> list[str]:
    """Each split's file loaded with ``pycocotools.coco.COCO``: categories, images and their files,
    every corpus instance once with its class, ``iscrowd`` 0, its segmentation the corpus RLE
    (size and counts, compared as strings: the masks' decoding is :func:`validate_shard`'s) and its
    area that RLE's pixel count."""
    from pycocotools.coco import COCO

    problems: list[str] = []
    expected_categories = {c.id: c.name for c in content.taxonomy.foreground}
    for split in content.splits:
        name = annotation_file(split)
        try:
            with out.local_copy(name) as path, contextlib.redirect_stdout(io.StringIO()):  # COCO() prints
                coco = COCO(path)
        except Exception as exc:  # noqa: BLE001 - any failure to load is the finding
            problems.append(f"{name}: pycocotools cannot load it ({type(exc).__name__}: {exc})")
            continue
        categories = {c["id"]: c["name"] for c in coco.dataset.get("categories", [])}
        if categories != expected_categories:
            problems.append(f"{name}: categories {categories} differ from the taxonomy {expected_categories}")
        rows = {row.image_id: row for row in content.iter_rows(split)}
        images = {image["image_uid"]: image for image in coco.dataset["images"]}
        if set(images) != set(rows):
            problems.append(f"{name}: images differ from the split ({len(images)} vs {len(rows)})")
        corpus = {a.annotation_id: a for a in content.annotations.itertuples() if a.image_id in rows}
        areas: list[tuple[str, Any, Any]] = []  # (record, its area, its corpus instance)
        seen = set()
        for ann in coco.dataset["annotations"]:
            record = f"{name}: annotation {ann.get('id')}"
            uid = ann.get("attributes", {}).get("annotation_uid")
            if ann.get("category_id") not in expected_categories:
                problems.append(
                    f"{record} (annotation_id {uid}): category_id {ann.get('category_id')} is not a taxonomy "
                    f"class (1..{len(expected_categories)})"
                )
            if ann.get("iscrowd") != 0:
                problems.append(f"{record}: iscrowd is {ann.get('iscrowd')!r}, not 0")
            source = corpus.get(uid)
            if source is None:
                problems.append(f"{record}: annotation_uid {uid!r} is not a corpus instance of this split")
                continue
            seen.add(uid)
            image = coco.imgs[ann["image_id"]]
            if (image["height"], image["width"]) != (int(source.height), int(source.width)):
                problems.append(
                    f"{record}: image size {image['height']}x{image['width']} differs from the mask's"
                )
                continue
            if ann.get("segmentation") != {
                "size": [int(source.height), int(source.width)],
                "counts": source.rle,
            }:
                problems.append(f"{record} ({uid}): segmentation is not the corpus instance's RLE")
            areas.append((record, ann.get("area"), source))
            if ann["category_id"] != int(source.class_id):
                problems.append(f"{record}: category_id {ann['category_id']} differs from the corpus class")
        if areas:
            sources = [source for _, _, source in areas]
            counts = rle_areas(
                [a.height for a in sources], [a.width for a in sources], [a.rle for a in sources]
            )
            for (record, area, _), count in zip(areas, counts.tolist(), strict=True):
                if not isinstance(area, (int, float)) or int(area) != count:
                    problems.append(f"{record}: area {area} is not the mask's pixel count {count}")
        missing = set(corpus) - seen
        if missing:
            problems.append(
                f"{name}: {len(missing)} corpus instances are missing, e.g. {sorted(missing)[:3]}"
            )
        present = set(out.list(f"images/{split}"))
        for image in coco.dataset["images"]:
            file = f"images/{split}/{image['file_name']}"
            if file not in present:
                problems.append(f"{name}: image {image['id']} file_name {file} is not in the release")
    return problems

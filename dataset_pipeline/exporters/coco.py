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

import numpy as np

from dataset_pipeline.exporters import ReleaseContent, ReleaseFolder
from dataset_pipeline.masks import decode_mask, rle_areas, rle_boxes

NAME = "coco"


def annotation_file(split: str) -> str:
    return f"annotations/instances_{split}.json"


def build_split(content: ReleaseContent, split: str) -> dict:
    """The COCO document of one split."""
    info = dict(content.info)
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
        "images": [],
        "annotations": [],
    }
    images = content.split_images(split)
    numbers = np.arange(1, len(images) + 1)
    for number, row in zip(numbers.tolist(), images.itertuples(index=False), strict=True):
        document["images"].append(
            {
                "id": number,
                "file_name": content.image_file(row).split("/", 1)[1],
                "width": int(row.width),
                "height": int(row.height),
                "license": 1,
                "date_captured": str(row.capture_ts),
                "image_uid": row.image_id,
            }
        )
    # Instances in image order (the content keeps them sorted by image id, as the images
    # of a split are), computed column-wise: areas and boxes in RLE space.
    instances = content.annotations[content.annotations.image_id.isin(images.image_id)]
    image_numbers = instances.image_id.map(dict(zip(images.image_id, numbers.tolist(), strict=True)))
    areas = rle_areas(instances.height, instances.width, instances.rle)
    boxes = rle_boxes(instances.height, instances.width, instances.rle)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).astype(float)
    columns = zip(
        image_numbers.tolist(),
        instances.class_id.tolist(),
        instances.height.tolist(),
        instances.width.tolist(),
        instances.rle.tolist(),
        areas.tolist(),
        xywh.tolist(),
        instances.annotation_id.tolist(),
        instances.annotator_id.tolist(),
        instances.assistance.tolist(),
        instances.review_status.tolist(),
        instances.z_order.tolist(),
        strict=True,
    )
    document["annotations"] = [
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
            area,
            box,
            annotation_id,
            annotator_id,
            assistance,
            review_status,
            z_order,
        ) in enumerate(columns, start=1)
    ]
    return document


def export(content: ReleaseContent, out: ReleaseFolder) -> list[str]:
    return [
        out.write_text(annotation_file(split), json.dumps(build_split(content, split), separators=(",", ":")))
        for split in content.splits
    ]


def validate(content: ReleaseContent, out: ReleaseFolder) -> list[str]:
    """Load each split with ``pycocotools.coco.COCO`` and compare every mask with the corpus, bit for bit."""
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
            mask = coco.annToMask(ann).astype(bool)
            truth = decode_mask(source.rle, source.height, source.width)
            if not np.array_equal(mask, truth):
                problems.append(
                    f"{record} ({uid}): annToMask differs from the corpus mask in "
                    f"{int((mask != truth).sum())} pixels"
                )
            if int(ann["area"]) != int(truth.sum()):
                problems.append(
                    f"{record}: area {ann['area']} is not the mask's pixel count {int(truth.sum())}"
                )
            if ann["category_id"] != int(source.class_id):
                problems.append(f"{record}: category_id {ann['category_id']} differs from the corpus class")
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

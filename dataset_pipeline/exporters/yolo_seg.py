"""YOLO segmentation labels (the ultralytics layout) and a ``data.yaml`` that ultralytics reads.

``labels/<split>/<stem>.txt`` beside ``images/<split>/<stem>.<ext>`` (ultralytics finds a
label by swapping ``/images/`` for ``/labels/``). One row per polygon::

    <class index> x1 y1 x2 y2 ...      # normalized to [0, 1] by width and height

Class index = taxonomy id - 1 (YOLO has no background class). Polygons come from
:func:`dataset_pipeline.masks.mask_to_polygons` with ``keep_holes``: each connected part of
an instance is its own row (same class), and each hole is bridged into its part's outline
by a zero-width cut, which even-odd fillers (``cv2.fillPoly``, pycocotools) leave empty.
``data.yaml`` has no ``path`` key, so ultralytics takes the yaml's own folder (the
release) as the dataset root wherever the release is copied.
"""

from __future__ import annotations

import math

import numpy as np
import yaml

from dataset_pipeline.exporters import ReleaseContent, ReleaseFolder, file_stem
from dataset_pipeline.masks import decode_mask, mask_to_polygons, polygons_to_rle, rle_iou

NAME = "yolo_seg"
MIN_IOU = 0.95


def label_file(split: str, image_id: str) -> str:
    return f"labels/{split}/{file_stem(image_id)}.txt"


def label_rows(content: ReleaseContent, row) -> list[str]:
    """The label file's lines for one image."""
    lines = []
    for instance in content.instances(row.image_id).itertuples():
        mask = decode_mask(instance.rle, instance.height, instance.width)
        for polygon in mask_to_polygons(mask, keep_holes=True):
            points = np.asarray(polygon).reshape(-1, 2) / (float(row.width), float(row.height))
            values = np.clip(points, 0.0, 1.0).ravel()
            coordinates = " ".join(["%.6f"] * len(values)) % tuple(values)
            lines.append(f"{int(instance.class_id) - 1} {coordinates}")
    return lines


def data_yaml(content: ReleaseContent) -> str:
    document = {split: f"images/{split}" for split in content.splits}
    document["nc"] = len(content.taxonomy.foreground)
    document["names"] = {c.id - 1: c.name for c in content.taxonomy.foreground}
    return yaml.safe_dump(document, sort_keys=False)


def export(content: ReleaseContent, out: ReleaseFolder) -> list[str]:
    written = [out.write_text("data.yaml", data_yaml(content))]
    for row in content.iter_rows():
        lines = label_rows(content, row)
        written.append(
            out.write_text(label_file(row.split, row.image_id), "\n".join(lines) + ("\n" if lines else ""))
        )
    return written


def parse_label_file(text: str, source: str, num_classes: int) -> list[tuple[int, np.ndarray]]:
    """Rows as (class index, (K, 2) normalized points); ValueError naming file, line and field
    for what ultralytics' label check also refuses (odd or too few coordinates, values
    outside [0, 1], a class index out of range, non-numbers)."""
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            values = [float(v) for v in fields]
        except ValueError:
            raise ValueError(f"{source} line {number}: a field is not a number") from None
        class_index, coordinates = values[0], values[1:]
        if class_index != int(class_index) or not 0 <= class_index < num_classes:
            raise ValueError(f"{source} line {number}: class index {fields[0]} outside 0..{num_classes - 1}")
        if len(coordinates) < 6 or len(coordinates) % 2:
            raise ValueError(
                f"{source} line {number}: {len(coordinates)} coordinates (need an even number >= 6)"
            )
        if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in coordinates):
            raise ValueError(f"{source} line {number}: coordinates outside [0, 1]")
        rows.append((int(class_index), np.asarray(coordinates).reshape(-1, 2)))
    return rows


def validate(content: ReleaseContent, out: ReleaseFolder) -> list[str]:
    """Parse every label file and rasterize it back: each instance's rows (matched by class
    and overlap) must give IoU >= 0.95 with the corpus mask."""
    problems: list[str] = []
    num_classes = len(content.taxonomy.foreground)
    try:
        document = yaml.safe_load(out.read_bytes("data.yaml"))
        if document.get("names") != {c.id - 1: c.name for c in content.taxonomy.foreground}:
            problems.append(f"data.yaml: names {document.get('names')} differ from the taxonomy")
        for split in content.splits:
            if document.get(split) != f"images/{split}":
                problems.append(f"data.yaml: {split} is {document.get(split)!r}, not 'images/{split}'")
    except (FileNotFoundError, yaml.YAMLError, AttributeError) as exc:
        problems.append(f"data.yaml: cannot be read ({exc})")
    for row in content.iter_rows():
        name = label_file(row.split, row.image_id)
        try:
            rows = parse_label_file(out.read_bytes(name).decode("utf-8"), name, num_classes)
        except (FileNotFoundError, ValueError, UnicodeDecodeError) as exc:
            problems.append(str(exc))
            continue
        height, width = int(row.height), int(row.width)
        instances = content.instances(row.image_id)
        rasters = [
            polygons_to_rle([(points * (width, height)).ravel().tolist()], height, width)
            for _, points in rows
        ]
        owner: dict[int, list[str]] = {i: [] for i in range(len(instances))}
        for (class_index, _), raster in zip(rows, rasters, strict=True):
            candidates = [i for i, c in enumerate(instances.class_id) if int(c) - 1 == class_index]
            if not candidates:
                problems.append(
                    f"{name}: a row of class index {class_index} matches no instance of that class"
                )
                continue
            overlap = rle_iou(raster, [instances.rle.iloc[i] for i in candidates], height, width)
            owner[candidates[int(np.argmax(overlap))]].append(raster)
        for i, instance in enumerate(instances.itertuples()):
            truth = decode_mask(instance.rle, height, width)
            drawn = np.zeros_like(truth)
            for raster in owner[i]:
                drawn ^= decode_mask(raster, height, width)  # parts are disjoint; xor keeps bridged holes
            union = (truth | drawn).sum()
            iou = float((truth & drawn).sum() / union) if union else 1.0
            if iou < MIN_IOU:
                problems.append(
                    f"{name}: instance {instance.annotation_id} rasterizes back at IoU {iou:.3f} < {MIN_IOU}"
                )
    return problems

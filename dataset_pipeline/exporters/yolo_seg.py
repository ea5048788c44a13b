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

import functools
import math

import numpy as np
import yaml

from dataset_pipeline.exporters import ReleaseContent, ReleaseFolder, file_stem
from dataset_pipeline.masks import decode_mask, mask_to_polygons, polygons_to_rle, rle_iou

NAME = "yolo_seg"
MIN_IOU = 0.95


def label_file(split: str, image_id: str) -> str:
    return f"labels/{split}/{file_stem(image_id)}.txt"


#: Outline simplification (pixels): pixel centres lie 0.25 px inside the traced outline, so points
#: within 0.25 px of the simplified line can go without moving any centre across it.
TOLERANCE_PX = 0.25


@functools.lru_cache(maxsize=8)
def _coordinate_text(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalized coordinate strings of every quarter-pixel outline position, per axis.

    Traced outlines run on the half-pixel grid of the 2x-upsampled mask: x = (k + 0.5) / 2 for
    integer k, so each coordinate is a lookup, not a float formatting, per point.
    """
    xs = np.array([f"{min(1.0, (k + 0.5) / (2 * width)):.6f}" for k in range(2 * width)], dtype=object)
    ys = np.array([f"{min(1.0, (k + 0.5) / (2 * height)):.6f}" for k in range(2 * height)], dtype=object)
    return xs, ys


def polygon_text(polygon: list[float], width: int, height: int) -> str:
    """A traced polygon's normalized ``x1 y1 x2 y2 ...`` (6 decimals; points off the grid snap to it,
    at most 0.25 px away)."""
    xs, ys = _coordinate_text(width, height)
    points = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    kx = np.clip(np.rint(points[:, 0] * 2 - 0.5).astype(np.int64), 0, 2 * width - 1)
    ky = np.clip(np.rint(points[:, 1] * 2 - 0.5).astype(np.int64), 0, 2 * height - 1)
    tokens = np.empty(2 * len(points), dtype=object)
    tokens[0::2], tokens[1::2] = xs[kx], ys[ky]
    return " ".join(tokens)


def label_rows(content: ReleaseContent, row) -> list[str]:
    """The label file's lines for one image."""
    lines = []
    width, height = int(row.width), int(row.height)
    instances = content.instances(row.image_id)
    for rle, class_id in zip(instances.rle, instances.class_id, strict=True):
        mask = decode_mask(rle, height, width)
        for polygon in mask_to_polygons(mask, keep_holes=True, tolerance=TOLERANCE_PX):
            lines.append(f"{int(class_id) - 1} {polygon_text(polygon, width, height)}")
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

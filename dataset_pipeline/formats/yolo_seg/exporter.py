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

from dataset_pipeline import layout
from dataset_pipeline.formats.exporting import ReleaseFolder, validate_by_shard
from dataset_pipeline.formats.release_content import ImageRow, ReleaseContent, file_stem
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
    """Normalized coordinates of every quarter-pixel outline position as 8 ASCII bytes, per axis.

    Traced outlines run on the half-pixel grid of the 2x-upsampled mask: x = (k + 0.5) / 2 for
    integer k, so each coordinate is a row lookup, not a float formatting, per point. Every
    value is in [0, 1] with 6 decimals, so every text is 8 characters (``0.123456``).
    """
    xs = "".join(f"{min(1.0, (k + 0.5) / (2 * width)):.6f}" for k in range(2 * width))
    ys = "".join(f"{min(1.0, (k + 0.5) / (2 * height)):.6f}" for k in range(2 * height))
    return (
        np.frombuffer(xs.encode("ascii"), np.uint8).reshape(-1, 8),
        np.frombuffer(ys.encode("ascii"), np.uint8).reshape(-1, 8),
    )


def polygons_text(polygons: list[list[float]], width: int, height: int) -> list[str]:
    """Traced polygons' normalized ``x1 y1 x2 y2 ...`` texts (6 decimals; points off the grid
    snap to it, at most 0.25 px away), all of an image's polygons in one lookup.

    >>> polygons_text([[0.25, 0.25, 1.75, 0.25, 1.75, 0.75]], 2, 1)
    ['0.125000 0.250000 0.875000 0.250000 0.875000 0.750000']
    """
    if not polygons:
        return []
    xs, ys = _coordinate_text(width, height)
    points = np.concatenate([np.asarray(p, dtype=np.float64) for p in polygons]).reshape(-1, 2)
    kx = np.rint(points[:, 0] * 2 - 0.5).astype(np.int64).clip(0, 2 * width - 1)
    ky = np.rint(points[:, 1] * 2 - 0.5).astype(np.int64).clip(0, 2 * height - 1)
    text = np.full((len(points), 2, 9), ord(" "), dtype=np.uint8)  # "x y " per point
    text[:, 0, :8], text[:, 1, :8] = xs[kx], ys[ky]
    joined = text.tobytes().decode("ascii")
    ends = np.cumsum([len(p) // 2 * 18 for p in polygons]).tolist()
    return [joined[start : end - 1] for start, end in zip([0, *ends[:-1]], ends, strict=True)]


def label_rows(content: ReleaseContent, row) -> list[str]:
    """The label file's lines for one image."""
    width, height = int(row.width), int(row.height)
    decoded = content.decoded(row)
    classes, polygons = [], []
    for mask, box, class_id in zip(decoded.masks, decoded.boxes, decoded.class_ids, strict=True):
        x0, y0, x1, y1 = (int(v) for v in box)
        inside = (0, 0, x1 - x0, y1 - y0)  # the mask is given within its box
        for polygon in mask_to_polygons(
            mask, keep_holes=True, tolerance=TOLERANCE_PX, box=inside, origin=(x0, y0)
        ):
            classes.append(int(class_id) - 1)
            polygons.append(polygon)
    return [f"{c} {text}" for c, text in zip(classes, polygons_text(polygons, width, height), strict=True)]


def data_yaml(content: ReleaseContent) -> str:
    document: dict[str, object] = {split: layout.release_images_folder(split) for split in content.splits}
    document["nc"] = len(content.taxonomy.foreground)
    document["names"] = {c.id - 1: c.name for c in content.taxonomy.foreground}
    return yaml.safe_dump(document, sort_keys=False)


def export_shared(content: ReleaseContent, out: ReleaseFolder) -> list[str]:
    return [out.write_text("data.yaml", data_yaml(content))]


def export_image(content: ReleaseContent, out: ReleaseFolder, row) -> str:
    lines = label_rows(content, row)
    return out.write_text(label_file(row.split, row.image_id), "\n".join(lines) + ("\n" if lines else ""))


def export(content: ReleaseContent, out: ReleaseFolder) -> list[str]:
    return export_shared(content, out) + [export_image(content, out, row) for row in content.iter_rows()]


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
    and overlap) must give IoU >= 0.95 with the corpus mask; ``data.yaml`` names the taxonomy."""
    return validate_by_shard(validate_release, validate_shard, content, out)


def validate_release(content: ReleaseContent, out: ReleaseFolder) -> list[str]:
    """``data.yaml``: the taxonomy's names by class index, a folder per split."""
    problems: list[str] = []
    try:
        document = yaml.safe_load(out.read_bytes("data.yaml"))
        if document.get("names") != {c.id - 1: c.name for c in content.taxonomy.foreground}:
            problems.append(f"data.yaml: names {document.get('names')} differ from the taxonomy")
        for split in content.splits:
            if document.get(split) != f"images/{split}":
                problems.append(f"data.yaml: {split} is {document.get(split)!r}, not 'images/{split}'")
    except (FileNotFoundError, yaml.YAMLError, AttributeError) as exc:
        problems.append(f"data.yaml: cannot be read ({exc})")
    return problems


def validate_shard(
    content: ReleaseContent, out: ReleaseFolder, split: str, shard: str, rows: list[ImageRow]
) -> list[str]:
    """One shard's label files, each instance rasterized back (IoU >= 0.95 with the corpus mask)."""
    problems: list[str] = []
    num_classes = len(content.taxonomy.foreground)
    for row in rows:
        name = label_file(row.split, row.image_id)
        if out.shared(name):
            continue
        try:
            labels = parse_label_file(out.read_bytes(name).decode("utf-8"), name, num_classes)
        except (FileNotFoundError, ValueError, UnicodeDecodeError) as exc:
            problems.append(str(exc))
            continue
        height, width = int(row.height), int(row.width)
        # the image's instances as Arrow slices: a shard's check builds no corpus-wide frame
        instances = content.instance_columns([row.image_id], ["annotation_id", "class_id", "rle"])
        classes, rles = [int(c) for c in instances["class_id"]], instances["rle"]
        rasters = [
            polygons_to_rle([(points * (width, height)).ravel().tolist()], height, width)
            for _, points in labels
        ]
        owner: dict[int, list[str]] = {i: [] for i in range(len(rles))}
        for (class_index, _), raster in zip(labels, rasters, strict=True):
            candidates = [i for i, c in enumerate(classes) if c - 1 == class_index]
            if not candidates:
                problems.append(
                    f"{name}: a row of class index {class_index} matches no instance of that class"
                )
                continue
            overlap = rle_iou(raster, [rles[i] for i in candidates], height, width)
            owner[candidates[int(np.argmax(overlap))]].append(raster)
        for i, (annotation_id, rle) in enumerate(zip(instances["annotation_id"], rles, strict=True)):
            truth = decode_mask(rle, height, width)
            drawn = np.zeros_like(truth)
            for raster in owner[i]:
                drawn ^= decode_mask(raster, height, width)  # parts are disjoint; xor keeps bridged holes
            union = (truth | drawn).sum()
            iou = float((truth & drawn).sum() / union) if union else 1.0
            if iou < MIN_IOU:
                problems.append(
                    f"{name}: instance {annotation_id} rasterizes back at IoU {iou:.3f} < {MIN_IOU}"
                )
    return problems

"""agreement_report: how well independent annotators agree, per class and per person.

On gold images (two or more annotators), for every class:

* **pairwise IoU**: for each pair of annotators, the IoU of their class masks (the union of
  their instances of that class) on the image; a class one of them did not draw counts as
  IoU 0 for that pair, a class neither drew does not count;
* **IoU against consensus**: each annotator's class mask against the pixel-wise majority of
  all the image's annotators (a pixel is in when more than half have it);
* **Boundary IoU** (Cheng et al., 2021): the same pairs compared on their inner boundary
  bands only (pixels within ``d`` of the mask's edge), ``d`` = 2 px at 640x480 scaled with the
  image diagonal; area IoU alone hides ragged edges on large objects.

Area metrics are computed in RLE space with pycocotools (merge, iou); only the boundary
bands are dense, cropped to the pair's box. The corpus is read image by image: memory
does not grow with it.

Per annotator: images/hour and seconds per mask (timed work only), refinement rate (pre-
masks edited to IoU < 0.9), unrefined rate (pre-masks submitted unchanged), first-pass
acceptance from peer review, IoU against consensus; flagged when velocity is over 2x or
under 0.5x the team median, unrefined over 40%, or acceptance under 80%.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dataset_pipeline import layout, schemas
from dataset_pipeline.annotation_corpus import from_premask
from dataset_pipeline.figures import (
    bar_chart,
    contact_sheet,
    distinct_colour,
    overlay,
    png_bytes,
    with_legend,
)
from dataset_pipeline.images import iter_images
from dataset_pipeline.masks import decode_mask, mask_bbox, rle_union
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.taxonomy import Taxonomy
from dataset_pipeline.verdicts import Verdict

REFINED_BELOW_IOU = 0.9
UNCHANGED_IOU = 0.999
VELOCITY_HIGH, VELOCITY_LOW = 2.0, 0.5
UNREFINED_FLAG = 0.40
ACCEPTANCE_FLAG = 0.80


@dataclass
class AgreementSettings:
    boundary_px_at_640x480: float = 2.0
    min_instances: int = 20
    thresholds: dict[str, float] = field(default_factory=dict)  # per-class overrides by name
    boundary: bool = True
    #: Batches named so are calibration rounds (the same images labelled by every annotator, monthly).
    calibration_prefix: str = "calibration"

    def band(self, height: int, width: int) -> int:
        """The boundary band in pixels for an image of this size (2 px at 640x480 by default)."""
        return max(1, int(round(self.boundary_px_at_640x480 * float(np.hypot(height, width)) / 800.0)))


def _rle(row) -> dict:
    return {"size": [int(row.height), int(row.width)], "counts": row.rle.encode("ascii")}


def _area(rle: dict | None) -> int:
    from pycocotools import mask as mask_utils

    return 0 if rle is None else int(mask_utils.area(rle))


def majority(rles: list[dict | None], voters: int) -> dict | None:
    """Pixel-wise majority of ``voters`` masks (None = empty): pixels in more than half of them.

    The union, over every group of ``voters // 2 + 1`` masks, of their intersection.
    """
    from pycocotools import mask as mask_utils

    need = voters // 2 + 1
    present = [r for r in rles if r is not None and _area(r) > 0]
    if len(present) < need:
        return None
    parts = [mask_utils.merge(list(group), intersect=True) for group in itertools.combinations(present, need)]
    return rle_union(parts)


def boundary_band(mask: np.ndarray, d: int) -> np.ndarray:
    """The inner boundary band: mask pixels within ``d`` pixels of its edge."""
    import cv2

    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * d + 1, 2 * d + 1))
    padded = np.pad(mask.astype(np.uint8), d + 1)
    eroded = cv2.erode(padded, kernel)[d + 1 : -d - 1, d + 1 : -d - 1]
    return mask & ~eroded.astype(bool)


def boundary_iou(a: dict | None, b: dict | None, d: int) -> float | None:
    """Boundary IoU of two RLE masks with band ``d``; dense only inside the pair's box."""
    from pycocotools import mask as mask_utils

    area_a, area_b = _area(a), _area(b)
    if area_a == 0 and area_b == 0:
        return None
    if area_a == 0 or area_b == 0:
        return 0.0
    ma, mb = mask_utils.decode(a).astype(bool), mask_utils.decode(b).astype(bool)
    box = mask_bbox(ma | mb)
    assert box is not None
    x0, y0, x1, y1 = box
    ba, bb = boundary_band(ma[y0:y1, x0:x1], d), boundary_band(mb[y0:y1, x0:x1], d)
    union = np.count_nonzero(ba | bb)
    return float(np.count_nonzero(ba & bb) / union) if union else None


def boundary_iou_matrices(groups: list[list[dict]], d: int, *, bucket: float = 1.25) -> list[np.ndarray]:
    """For each group of non-empty RLE masks of one image (a class's masks, one per annotator),
    the Boundary IoU of every pair, as :func:`boundary_iou` defines it (equal to it to float
    precision; a test holds them together), for many images at once.

    Why it is fast: :func:`boundary_iou` decodes both masks of a pair at full frame and erodes
    them once per pair, a dozen array operations each time. Here every step is one operation for
    all the groups given: the strings are read in one pass
    (:func:`~dataset_pipeline.masks.compressed_rle_runs`); each mask is painted, as column
    segments, only inside its group's box, transposed (RLE runs go down the columns); the k-th
    masks of all groups form plane k, each group's box at the same place in every plane, ``d + 1``
    zero pixels around each box, so that one erosion serves them all; and each pixel's bands
    across the planes become one bit pattern, whose counts per group give every pair's band
    intersection. Boxes are padded to the tallest one's height in a pass, so groups of similar
    height go together (within ``bucket`` times of each other).

    >>> from dataset_pipeline.masks import encode_mask
    >>> a = np.zeros((20, 20), bool); a[5:15, 5:15] = True
    >>> b = np.zeros((20, 20), bool); b[5:15, 6:16] = True
    >>> rles = [{"size": [20, 20], "counts": encode_mask(m).encode()} for m in (a, b)]
    >>> bool(np.isclose(boundary_iou_matrices([rles], 1)[0][0, 1], boundary_iou(rles[0], rles[1], 1)))
    True
    """
    from pycocotools import mask as mask_utils

    masks = [m for group in groups for m in group]
    if not masks:
        return []
    sizes = np.array([len(g) for g in groups], dtype=np.int64)
    boxes = np.asarray(mask_utils.toBbox(masks), dtype=np.float64).reshape(len(masks), 4)
    firsts = np.cumsum(sizes) - sizes
    lo = np.minimum.reduceat(boxes[:, :2], firsts).astype(np.int64)  # per group: x0, y0
    hi = np.maximum.reduceat(boxes[:, :2] + boxes[:, 2:], firsts).astype(np.int64)  # x1, y1
    tall = (hi[:, 1] - lo[:, 1] + 2 * d + 2).astype(np.float64)
    order = np.argsort(tall, kind="stable")
    out: list[np.ndarray] = [np.empty(0)] * len(groups)
    start = 0
    while start < len(order):
        stop = int(np.searchsorted(tall[order], bucket * tall[order[start]], side="right"))
        chosen = order[start:stop]
        found = _boundary_iou_planes([groups[g] for g in chosen], lo[chosen], hi[chosen], sizes[chosen], d)
        for g, matrix in zip(chosen, found, strict=True):
            out[g] = matrix
        start = stop
    return out


def _boundary_iou_planes(
    groups: list[list[dict]], lo: np.ndarray, hi: np.ndarray, sizes: np.ndarray, d: int
) -> list[np.ndarray]:
    """:func:`boundary_iou_matrices` for groups of similar height, given each group's box."""
    import cv2

    from dataset_pipeline.masks import compressed_rle_runs

    masks = [m for group in groups for m in group]
    planes = int(sizes.max())
    if planes > 16:
        raise ValueError(f"Boundary IoU of {planes} masks in one group: at most 16 annotators an image")
    n_groups = len(groups)
    group_of = np.repeat(np.arange(n_groups), sizes)
    slot = np.arange(len(masks)) - np.repeat(np.cumsum(sizes) - sizes, sizes)  # plane of each mask
    heights = np.array([m["size"][0] for m in masks], dtype=np.int64)
    pad = d + 1
    # A plane: one block of rows per group (its box's columns), as wide as the tallest box.
    block_rows = hi[:, 0] - lo[:, 0] + 2 * pad
    cols = int((hi[:, 1] - lo[:, 1]).max()) + 2 * pad
    first_row = np.cumsum(block_rows) - block_rows
    plane_rows = int(block_rows.sum())
    runs, counts = compressed_rle_runs([m["counts"] for m in masks])
    head = np.cumsum(counts) - counts
    owner = np.repeat(np.arange(len(masks)), counts)
    ends = np.cumsum(runs)
    ends -= np.repeat(ends[head] - runs[head], counts)
    index = np.arange(runs.size) - np.repeat(head, counts)
    fg = (index % 2 == 1) & (runs > 0)
    starts, ends, owner = (ends - runs)[fg], ends[fg], owner[fg]
    # A run that crosses columns is split into one segment per column.
    height = heights[owner]
    first_col, last_col = starts // height, (ends - 1) // height
    pieces = last_col - first_col + 1
    if (pieces > 1).any():
        col = np.repeat(first_col, pieces) + (
            np.arange(int(pieces.sum())) - np.repeat(np.cumsum(pieces) - pieces, pieces)
        )
        owner, height = np.repeat(owner, pieces), np.repeat(height, pieces)
        starts, ends = np.repeat(starts, pieces), np.repeat(ends, pieces)
    else:
        col = first_col
    seg_start = np.maximum(starts, col * height) - col * height
    seg_end = np.minimum(ends, (col + 1) * height) - col * height
    group = group_of[owner]
    row = slot[owner] * plane_rows + first_row[group] + col - lo[group, 0] + pad
    base = row * cols + pad - lo[group, 1]
    # The planes are painted with one np.repeat: background gap, segment, gap, segment, ...
    starts_at = base + seg_start
    order = np.argsort(starts_at, kind="stable")
    starts_at, ends_at = starts_at[order], (base + seg_end)[order]
    total = planes * plane_rows * cols
    lengths = np.empty(2 * starts_at.size + 1, dtype=np.int64)
    lengths[0:-1:2] = starts_at - np.r_[0, ends_at[:-1]]
    lengths[1::2] = ends_at - starts_at
    lengths[-1] = total - (ends_at[-1] if ends_at.size else 0)
    values = np.zeros(lengths.size, dtype=np.uint8)
    values[1::2] = 1
    stack = np.repeat(values, lengths).reshape(-1, cols)
    # OpenCV's ellipse is not symmetric under transposition (5x5: the middle row is full, the top
    # row one pixel): the stack is transposed, so is the kernel.
    kernel = np.ascontiguousarray(cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * d + 1, 2 * d + 1)).T)
    eroded = cv2.erode(stack, kernel)
    bands = np.subtract(stack, eroded, out=eroded).reshape(planes, plane_rows * cols)
    # Each pixel's bands as one bit pattern; they are a few pixels per perimeter, counted there only.
    pattern = bands[0].astype(np.uint16 if planes > 8 else np.uint8)
    for k in range(1, planes):
        pattern |= bands[k].astype(pattern.dtype) << k
    anywhere = np.flatnonzero(pattern != 0)
    pattern = pattern[anywhere].astype(np.int64)
    group_starts = first_row * cols
    pixel_group = np.searchsorted(group_starts, anywhere, side="right") - 1
    patterns = 1 << planes
    histogram = np.bincount(pixel_group * patterns + pattern, minlength=n_groups * patterns)
    histogram = histogram.reshape(n_groups, patterns).astype(np.float64)
    bits = (np.arange(patterns)[:, None] >> np.arange(planes)[None, :]) & 1  # (pattern, plane)
    both = (bits[:, :, None] & bits[:, None, :]).reshape(patterns, planes * planes)
    inter = (histogram @ both).reshape(n_groups, planes, planes)
    area = np.diagonal(inter, axis1=1, axis2=2)
    union = area[:, :, None] + area[:, None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        ious = np.where(union > 0, inter / union, np.nan)
    return [ious[g, :size, :size] for g, size in enumerate(sizes)]


@dataclass
class AgreementReport:
    per_class: pd.DataFrame
    per_annotator: pd.DataFrame
    per_batch: pd.DataFrame
    per_image: pd.DataFrame  # image_id, disagreement, annotators
    per_revision: pd.DataFrame = field(default_factory=schemas.AGREEMENT_PER_REVISION.frame)
    per_batch_gold: pd.DataFrame = field(default_factory=schemas.AGREEMENT_PER_BATCH_GOLD.frame)
    drift: pd.DataFrame = field(default_factory=schemas.ANNOTATOR_DRIFT.frame)
    #: Agreement of each pair of annotators and the batches they shared gold in: whether the
    #: assignment of gold images rotates across pairs, and which pair disagrees.
    per_pair: pd.DataFrame = field(default_factory=lambda: schemas.AGREEMENT_PER_PAIR.frame())

    def failing_classes(self) -> pd.DataFrame:
        counted = self.per_class[self.per_class.instances >= self.per_class.min_instances]
        return counted[~counted.passed]


def compute_agreement(
    annotations: pd.DataFrame, taxonomy: Taxonomy, settings: AgreementSettings | None = None
) -> AgreementReport:
    """The agreement report of a corpus (its gold images are those with 2+ annotators).

    The same report :func:`update_agreement` makes batch by batch from the stored corpus: both
    are :func:`agreement_from_evidence` of the annotations' :func:`agreement_evidence`."""
    settings = settings or AgreementSettings()
    return agreement_from_evidence(agreement_evidence(annotations, settings), taxonomy, settings)


def _batch(image_ids: pd.Series) -> pd.Series:
    return image_ids.str.split("/", n=1).str[0]


def agreement_evidence(
    annotations: pd.DataFrame, settings: AgreementSettings | None = None
) -> dict[str, pd.DataFrame]:
    """The sums and counts the agreement report is made of (``schemas.AGREEMENT_EVIDENCE``), for
    any set of whole images: every pairwise, consensus and Boundary IoU summed by class, batch,
    annotator (pair) and guideline revision, per-annotator work counts, and each gold image's
    disagreement. Evidence of disjoint batches adds up (tables concatenated), which is what
    lets :func:`update_agreement` make a batch's once and keep it.

    Only ``boundary_px_at_640x480`` and ``boundary`` of ``settings`` shape it; thresholds and
    the gold instances a class needs are applied by :func:`agreement_from_evidence`.
    """
    settings = settings or AgreementSettings()
    from pycocotools import mask as mask_utils

    # (batch, class_id, annotator_a, annotator_b, shared revision or None) -> [iou sum, pairs]
    pair_sums: dict[tuple[str, int, str, str, int | None], list[float]] = defaultdict(lambda: [0.0, 0])
    pair_boundary: dict[int, list[float]] = defaultdict(list)
    consensus_sums: dict[tuple[str, str, int], list[float]] = defaultdict(lambda: [0.0, 0])
    instances: dict[int, int] = defaultdict(int)
    images_per_class: dict[int, int] = defaultdict(int)
    images_by_revision: dict[tuple[int, int], int] = defaultdict(int)
    per_image = []
    # Boundary IoU is computed for many images at once (boundary_iou_matrices), per band width.
    pending_boundary: dict[int, list[tuple[int, list[str], list[str], list[dict]]]] = defaultdict(list)

    gold = annotations[annotations.groupby("image_id").annotator_id.transform("nunique") >= 2]
    gold = gold.sort_values("image_id", kind="stable")
    # Plain arrays, not pandas rows: the loop below runs once per gold image.
    image_ids = gold.image_id.to_numpy()
    annotator_ids = gold.annotator_id.to_numpy()
    revisions = (
        gold.guideline_revision.to_numpy(dtype=object, na_value=None)
        if "guideline_revision" in gold
        else np.full(len(gold), None, dtype=object)
    )
    class_ids = gold.class_id.to_numpy(dtype=np.int64)
    heights, widths = gold.height.to_numpy(dtype=np.int64), gold.width.to_numpy(dtype=np.int64)
    rles = [
        {"size": [int(h), int(w)], "counts": r.encode("ascii")}
        for h, w, r in zip(heights, widths, gold.rle, strict=True)
    ]
    starts = (
        np.r_[0, np.flatnonzero(image_ids[1:] != image_ids[:-1]) + 1, len(image_ids)]
        if len(image_ids)
        else [0]
    )
    for start, stop in zip(starts[:-1], starts[1:], strict=True):
        image_id = image_ids[start]
        annotators = sorted(set(annotator_ids[start:stop]))
        height, width = int(heights[start]), int(widths[start])
        d = settings.band(height, width)
        batch = image_id.split("/", 1)[0]
        grouped: dict[int, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
        revision_of: dict[str, object] = {}
        for index in range(start, stop):
            grouped[int(class_ids[index])][annotator_ids[index]].append(rles[index])
            revision_of.setdefault(annotator_ids[index], revisions[index])
        image_pair_ious = []
        image_revisions: set[tuple[int, int]] = set()
        boundary_groups: list[tuple[int, list[str], list[dict]]] = []
        for class_id, drawn in grouped.items():
            instances[class_id] += sum(len(v) for v in drawn.values())
            images_per_class[class_id] += 1
            masks = {a: rle_union(v) for a, v in drawn.items()}
            present = [a for a in annotators if a in masks]
            matrix = mask_utils.iou(
                [masks[a] for a in present], [masks[a] for a in present], [0] * len(present)
            )
            matrix = np.asarray(matrix, dtype=np.float64).reshape(len(present), len(present))
            position = {a: i for i, a in enumerate(present)}
            if settings.boundary:
                nonempty = {a: m for a in present if (m := masks[a]) is not None and _area(m) > 0}
                if nonempty:
                    boundary_groups.append((class_id, list(nonempty), list(nonempty.values())))
            for a, b in itertools.combinations(annotators, 2):
                if a in position and b in position:
                    iou = float(matrix[position[a], position[b]])
                elif a in position or b in position:
                    iou = 0.0  # one of the pair did not draw the class
                else:
                    continue  # neither did (a third annotator drew it): no evidence for this pair
                # both worked under the same rules: evidence of what that revision achieves
                shared = (
                    revision_of[a]
                    if revision_of[a] is not None and revision_of[a] == revision_of[b]
                    else None
                )
                key = (batch, class_id, a, b, None if shared is None else int(shared))  # type: ignore[call-overload]
                pair_sums[key][0] += iou
                pair_sums[key][1] += 1
                image_pair_ious.append(iou)
                if shared is not None:
                    image_revisions.add((class_id, int(shared)))  # type: ignore[call-overload]

            consensus = majority([masks.get(a) for a in annotators], len(annotators))
            if consensus is not None:
                against = np.asarray(
                    mask_utils.iou([masks[a] for a in present], [consensus], [0] * 1), dtype=np.float64
                ).reshape(-1)
            for annotator in annotators:
                consensus_iou: float | None
                if consensus is None:
                    consensus_iou = 0.0 if annotator in position else None
                else:
                    consensus_iou = float(against[position[annotator]]) if annotator in position else 0.0
                if consensus_iou is not None:
                    sums = consensus_sums[(batch, annotator, class_id)]
                    sums[0] += consensus_iou
                    sums[1] += 1
        for shared_key in image_revisions:
            images_by_revision[shared_key] += 1
        if boundary_groups:
            waiting = pending_boundary[d]
            waiting += [
                (class_id, annotators, drawn_any, masks) for class_id, drawn_any, masks in boundary_groups
            ]
            if len(waiting) >= BOUNDARY_CHUNK_GROUPS:
                _add_boundary_ious(waiting, d, pair_boundary)
                waiting.clear()
        per_image.append(
            {
                "batch": batch,
                "image_id": image_id,
                "annotators": len(annotators),
                "mean_pairwise_iou": float(np.mean(image_pair_ious)) if image_pair_ious else np.nan,
                "disagreement": 1 - float(np.mean(image_pair_ious)) if image_pair_ious else 0.0,
            }
        )
    for d, waiting in pending_boundary.items():
        _add_boundary_ious(waiting, d, pair_boundary)

    tables = schemas.AGREEMENT_EVIDENCE
    first_time = _first_created(annotations)
    return {
        "pairs": tables["pairs"].frame(
            {
                "batch": batch,
                "class_id": class_id,
                "annotator_a": a,
                "annotator_b": b,
                "guideline_revision": pd.NA if revision is None else revision,
                "iou_sum": total,
                "pairs": n,
            }
            for (batch, class_id, a, b, revision), (total, n) in sorted(
                pair_sums.items(), key=lambda kv: (*kv[0][:4], -1 if kv[0][4] is None else kv[0][4])
            )
        ),
        "boundary": tables["boundary"].frame(
            {"class_id": c, "iou_sum": float(np.sum(v)), "pairs": len(v)}
            for c, v in sorted(pair_boundary.items())
        ),
        "classes": tables["classes"].frame(
            {"class_id": c, "instances": instances[c], "images": images_per_class[c]}
            for c in sorted(instances)
        ),
        "revisions": tables["revisions"].frame(
            {"class_id": c, "guideline_revision": r, "images": n}
            for (c, r), n in sorted(images_by_revision.items())
        ),
        "consensus": tables["consensus"].frame(
            {"batch": b, "annotator_id": a, "class_id": c, "iou_sum": total, "comparisons": n}
            for (b, a, c), (total, n) in sorted(consensus_sums.items())
        ),
        "annotators": annotator_counts(annotations),
        "batches": tables["batches"].frame(
            {"batch": b, "first_created_at": first_time.get(b)}
            for b in (sorted(set(_batch(annotations.image_id))) if len(annotations) else [])
        ),
        "images": tables["images"].frame(per_image),
    }


def _mean(total: float, n: int) -> float:
    return round(float(total) / n, 4) if n else np.nan


def agreement_from_evidence(
    evidence: dict[str, pd.DataFrame], taxonomy: Taxonomy, settings: AgreementSettings | None = None
) -> AgreementReport:
    """The agreement report from the :func:`agreement_evidence` of the corpus's batches (each
    table their rows concatenated). Every mean is a sum over a count, so batch by batch and
    whole give the same report; the velocity flags use the team-wide median."""
    settings = settings or AgreementSettings()
    pairs, consensus, counts = evidence["pairs"], evidence["consensus"], evidence["annotators"]
    by_class = pairs.groupby("class_id")[["iou_sum", "pairs"]].sum()
    boundary = evidence["boundary"].groupby("class_id")[["iou_sum", "pairs"]].sum()
    classes = evidence["classes"].groupby("class_id")[["instances", "images"]].sum()
    mine = consensus.groupby(["annotator_id", "class_id"])[["iou_sum", "comparisons"]].sum()
    consensus_means = (mine.iou_sum / mine.comparisons).rename("mean").reset_index()
    rows = []
    for cls in taxonomy.foreground:
        n = int(by_class.pairs.get(cls.id, 0))
        mean = float(by_class.iou_sum[cls.id]) / n if n else np.nan
        threshold = float(settings.thresholds.get(cls.name, cls.agreement_threshold))
        per_annotator_consensus = consensus_means[consensus_means.class_id == cls.id]["mean"]
        n_boundary = int(boundary.pairs.get(cls.id, 0))
        rows.append(
            {
                "class_id": cls.id,
                "class": cls.name,
                "category": cls.category,
                "mean_pairwise_iou": round(mean, 4) if n else np.nan,
                "boundary_iou": _mean(boundary.iou_sum[cls.id], n_boundary) if n_boundary else np.nan,
                "iou_vs_consensus": round(float(per_annotator_consensus.mean()), 4)
                if len(per_annotator_consensus)
                else np.nan,
                "threshold": threshold,
                "passed": bool(n) and mean >= threshold,
                "instances": int(classes.instances.get(cls.id, 0)),
                "images": int(classes.images.get(cls.id, 0)),
                "pairs": n,
                "min_instances": settings.min_instances,
            }
        )
    per_annotator = annotator_stats(counts, consensus)
    by_batch = consensus.groupby(["batch", "annotator_id"])[["iou_sum", "comparisons"]].sum()
    per_batch = schemas.AGREEMENT_PER_BATCH.frame(
        {
            "batch": b,
            "annotator_id": a,
            "iou_vs_consensus": _mean(r.iou_sum, int(r.comparisons)),
            "comparisons": int(r.comparisons),
        }
        for (b, a), r in by_batch.iterrows()
    )
    if len(per_batch):
        per_batch = per_batch.merge(_batch_velocity(counts), on=["batch", "annotator_id"], how="left")
    names = {c.id: c.name for c in taxonomy.foreground}
    shared = pairs[pairs.guideline_revision.notna()]
    by_revision = shared.groupby(["class_id", "guideline_revision"])[["iou_sum", "pairs"]].sum()
    revision_images = evidence["revisions"].groupby(["class_id", "guideline_revision"]).images.sum()
    per_revision = schemas.AGREEMENT_PER_REVISION.frame(
        {
            "class_id": class_id,
            "class": names.get(class_id, str(class_id)),
            "guideline_revision": revision,
            "mean_pairwise_iou": _mean(r.iou_sum, int(r.pairs)),
            "pairs": int(r.pairs),
            "images": int(revision_images.get((class_id, revision), 0)),
        }
        for (class_id, revision), r in by_revision.iterrows()
    )
    first_time = {
        r.batch: r.first_created_at
        for r in evidence["batches"].itertuples()
        if r.first_created_at is not None
    }
    images = evidence["images"]
    gold_images = images.groupby("batch").image_id.count()
    gold = pairs.groupby("batch")[["iou_sum", "pairs"]].sum()
    per_batch_gold = schemas.AGREEMENT_PER_BATCH_GOLD.frame(
        {
            "batch": batch,
            "calibration": batch.startswith(settings.calibration_prefix),
            "first_created_at": first_time.get(batch),
            "gold_images": int(gold_images.get(batch, 0)),
            "mean_pairwise_iou": _mean(r.iou_sum, int(r.pairs)),
            "pairs": int(r.pairs),
        }
        for batch, r in sorted(gold.iterrows(), key=lambda kv: (str(first_time.get(kv[0])), kv[0]))
    )
    people = pairs.groupby(["annotator_a", "annotator_b"]).agg(
        iou_sum=("iou_sum", "sum"), pairs=("pairs", "sum"), batches=("batch", "nunique")
    )
    return AgreementReport(
        per_class=pd.DataFrame(rows),
        per_annotator=per_annotator,
        per_batch=per_batch,
        per_image=schemas.AGREEMENT_PER_IMAGE.cast(
            images[list(schemas.AGREEMENT_PER_IMAGE.columns)].reset_index(drop=True)
        ),
        per_revision=per_revision,
        per_batch_gold=per_batch_gold,
        drift=annotator_drift(per_batch, first_time, settings.calibration_prefix),
        per_pair=schemas.AGREEMENT_PER_PAIR.frame(
            {
                "annotator_a": a,
                "annotator_b": b,
                "mean_pairwise_iou": _mean(r.iou_sum, int(r.pairs)),
                "comparisons": int(r.pairs),
                "batches": int(r.batches),
            }
            for (a, b), r in people.iterrows()
        ),
    )


def _first_created(annotations: pd.DataFrame) -> dict[str, str]:
    """Per batch: its first annotation's time (ISO), the order batches are shown in over time."""
    if not len(annotations) or "created_at" not in annotations:
        return {}
    times = pd.to_datetime(annotations.created_at, utc=True, errors="coerce", format="ISO8601")
    first = times.groupby(annotations.image_id.str.split("/", n=1).str[0]).min()
    return {b: t.isoformat() for b, t in first.items() if pd.notna(t)}


def annotator_drift(
    per_batch: pd.DataFrame, first_time: dict[str, str], calibration_prefix: str
) -> pd.DataFrame:
    """Each annotator's IoU against the consensus batch after batch in time order, and its change
    since their first batch (calibration rounds apart, as the same images month after month are
    the cleanest measure of drift).

    >>> table = pd.DataFrame({"batch": ["b1", "b2"], "annotator_id": ["a", "a"],
    ...                       "iou_vs_consensus": [0.9, 0.8], "comparisons": [5, 5]})
    >>> annotator_drift(table, {"b1": "2026-11-01", "b2": "2026-11-08"}, "calibration").drift.tolist()
    [0.0, -0.1]
    """
    rows = []
    if not len(per_batch):
        return schemas.ANNOTATOR_DRIFT.frame()
    ordered = per_batch.assign(
        first_created_at=per_batch.batch.map(first_time),
        calibration=per_batch.batch.str.startswith(calibration_prefix),
    ).sort_values(["annotator_id", "calibration", "first_created_at", "batch"], na_position="last")
    for (_, _), mine in ordered.groupby(["annotator_id", "calibration"], sort=False):
        first = float(mine.iou_vs_consensus.iloc[0])
        for r in mine.itertuples():
            rows.append(
                {
                    "annotator_id": r.annotator_id,
                    "batch": r.batch,
                    "calibration": bool(r.calibration),
                    "first_created_at": r.first_created_at,
                    "iou_vs_consensus": float(r.iou_vs_consensus),
                    "drift": round(float(r.iou_vs_consensus) - first, 4),
                    "comparisons": int(r.comparisons),
                }
            )
    return schemas.ANNOTATOR_DRIFT.frame(rows)


#: Class masks groups (one per gold image and class) given to :func:`boundary_iou_matrices` at once:
#: about 64 images of 6 classes, a few MiB of planes.
BOUNDARY_CHUNK_GROUPS = 384


def _add_boundary_ious(
    waiting: list[tuple[int, list[str], list[str], list[dict]]], d: int, pair_boundary: dict[int, list[float]]
) -> None:
    """Every annotator pair's Boundary IoU of each waiting (class, image annotators, who drew it,
    their masks) group, into ``pair_boundary`` by class; a pair of whom one drew nothing is 0."""
    matrices = boundary_iou_matrices([masks for *_, masks in waiting], d)
    for (class_id, annotators, drawn_any, _), matrix in zip(waiting, matrices, strict=True):
        at = {a: i for i, a in enumerate(drawn_any)}
        for a, b in itertools.combinations(annotators, 2):
            if a in at and b in at:
                if not np.isnan(matrix[at[a], at[b]]):
                    pair_boundary[class_id].append(float(matrix[at[a], at[b]]))
            elif a in at or b in at:
                pair_boundary[class_id].append(0.0)  # one of the pair drew nothing


def annotator_counts(annotations: pd.DataFrame) -> pd.DataFrame:
    """Per batch and annotator, the counts the per-annotator rates are made of (they add up across
    batches; rates and medians do not): images and masks, timed seconds, images and masks, masks
    started from a pre-mask, how many of those were refined or left unchanged, images reviewed
    and accepted at first pass."""
    table = schemas.AGREEMENT_EVIDENCE["annotators"]
    if not len(annotations):
        return table.frame()
    rows = []
    for (batch, annotator), group in annotations.groupby([_batch(annotations.image_id), "annotator_id"]):
        timed = group[group.seconds_spent.notna()]
        linked = group[from_premask(group)]
        verdicts = group[group.review_accepted.notna()].groupby("image_id").review_accepted.first()
        rows.append(
            {
                "batch": batch,
                "annotator_id": annotator,
                "images": group.image_id.nunique(),
                "masks": len(group),
                "timed_seconds": float(timed.seconds_spent.sum()),
                "timed_images": timed.image_id.nunique(),
                "timed_masks": len(timed),
                "linked": len(linked),
                "refined": int((linked.premask_iou < REFINED_BELOW_IOU).sum()),
                "unrefined": int((linked.premask_iou >= UNCHANGED_IOU).sum()),
                "reviewed": len(verdicts),
                "accepted": int(verdicts.astype(bool).sum()),
            }
        )
    return table.frame(rows)


def _velocity(counts: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(images/hour, seconds/mask) of counts rows, over their timed images only."""
    seconds = counts.timed_seconds.where(counts.timed_masks > 0)
    hours = (seconds / 3600.0).where(seconds > 0)
    return counts.timed_images / hours, seconds / counts.timed_masks.where(counts.timed_masks > 0)


def _batch_velocity(counts: pd.DataFrame) -> pd.DataFrame:
    images_per_hour, _ = _velocity(counts)
    return schemas.BATCH_VELOCITY.from_columns(
        {
            "batch": counts.batch,
            "annotator_id": counts.annotator_id,
            "images_per_hour": images_per_hour.round(2),
        }
    )


def annotator_stats(counts: pd.DataFrame, consensus: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per annotator: velocity, refinement, unrefined and acceptance rates, IoU vs consensus, flags,
    from the batches' :func:`annotator_counts` and consensus evidence summed."""
    if not len(counts):
        return pd.DataFrame().assign(flags="")
    totals = counts.drop(columns="batch").groupby("annotator_id").sum().reset_index()
    images_per_hour, seconds_per_mask = _velocity(totals)
    linked = totals.linked.where(totals.linked > 0)
    against = (
        consensus.groupby("annotator_id")[["iou_sum", "comparisons"]].sum()
        if consensus is not None and len(consensus)
        else pd.DataFrame(columns=["iou_sum", "comparisons"])
    )
    table = pd.DataFrame(
        {
            "annotator_id": totals.annotator_id,
            "images": totals.images,
            "masks": totals.masks,
            "images_per_hour": images_per_hour.round(2),
            "seconds_per_mask": seconds_per_mask.round(1),
            "refinement_rate": (totals.refined / linked).round(4),
            "unrefined_rate": (totals.unrefined / linked).round(4),
            "reviewed_images": totals.reviewed,
            "acceptance_rate": (totals.accepted / totals.reviewed.where(totals.reviewed > 0)).round(4),
            "iou_vs_consensus": [
                _mean(against.iou_sum[a], int(against.comparisons[a])) if a in against.index else np.nan
                for a in totals.annotator_id
            ],
        }
    )
    median = float(table.images_per_hour.median())
    flags = []
    for row in table.itertuples():
        reasons = []
        if not np.isnan(row.images_per_hour) and median > 0:
            ratio = row.images_per_hour / median
            if ratio > VELOCITY_HIGH:
                reasons.append(f"velocity {ratio:.1f}x the team median")
            elif ratio < VELOCITY_LOW:
                reasons.append(f"velocity {ratio:.2f}x the team median")
        if not np.isnan(row.unrefined_rate) and row.unrefined_rate > UNREFINED_FLAG:
            reasons.append(f"{row.unrefined_rate:.0%} of pre-masks submitted unchanged")
        if not np.isnan(row.acceptance_rate) and row.acceptance_rate < ACCEPTANCE_FLAG:
            reasons.append(
                f"first-pass acceptance {row.acceptance_rate:.0%} ({row.reviewed_images} reviewed)"
            )
        flags.append("; ".join(reasons))
    table = table.assign(flags=flags, flagged=[bool(f) for f in flags])
    # The reason for a flag right after the name: where a person reading the table looks first.
    first = ["annotator_id", "flagged", "flags"]
    return table[first + [c for c in table.columns if c not in first]]


def write_report(store: DatasetStore, report: AgreementReport) -> None:
    for name, key in layout.AGREEMENT_TABLES.items():
        store.write_parquet(key, getattr(report, name))


def per_class_chart_png(per_class: pd.DataFrame) -> bytes:
    """Mean pairwise IoU per class as bars, each class's threshold as a tick."""
    return png_bytes(
        bar_chart(
            [f"{r['class']} (n={r.instances})" for _, r in per_class.iterrows()],
            list(per_class.mean_pairwise_iou),
            list(per_class.threshold),
            title="mean pairwise IoU per class (tick: threshold)",
        )
    )


def disagreements_png(store: DatasetStore, worst: list[tuple[str, str, float]]) -> bytes | None:
    """The gold images ``worst`` ((batch, image_id, mean pairwise IoU), as
    :attr:`StreamedAgreement.worst`), each annotator's outlines in their own colour, with the
    colour key under them; only their batches' corpus parts are read. None without any."""
    from dataset_pipeline.annotation_corpus import corpus_part_keys

    tiles, captions, shown = [], [], []
    for batch in dict.fromkeys(b for b, _, _ in worst):
        score_of = {i: s for b, i, s in worst if b == batch}
        annotations, images = (store.read_parquet(k) for k in corpus_part_keys(batch))
        annotations = annotations[annotations.image_id.isin(score_of)]
        for image_id, rgb in iter_images(store, images[images.image_id.isin(score_of)]):
            rows = annotations[annotations.image_id == image_id]
            masks = [decode_mask(r.rle, r.height, r.width) for r in rows.itertuples()]
            shown += list(rows.annotator_id)
            tiles.append((rgb, masks, list(rows.annotator_id)))
            captions.append(f"{image_id.rsplit('/', 1)[-1]} IoU {score_of[image_id]:.2f}")
    if not tiles:
        return None
    annotators = sorted(set(shown))
    colour_of = {a: distinct_colour(i) for i, a in enumerate(annotators)}
    drawn = [overlay(rgb, masks, [colour_of[a] for a in who], alpha=0.0) for rgb, masks, who in tiles]
    sheet = contact_sheet(drawn, captions, columns=3, cell=320)
    return png_bytes(with_legend(sheet, annotators, [colour_of[a] for a in annotators]))


#: Bump when a batch's evidence is made differently: every batch's part is made again.
PART_VERSION = 1
STAGE = "agreement"
#: How many gold images the largest-disagreements sheet shows.
WORST_COUNT = 6


@dataclass
class StreamedAgreement:
    """The stored agreement report, made batch by batch (:func:`update_agreement`)."""

    report: AgreementReport
    batches: list[str]
    made: list[str]  # the batches whose evidence was made again; the rest were kept
    origins: pd.DataFrame  # mask_origins, per batch
    worst: list[tuple[str, str, float]]  # (batch, image_id, mean pairwise IoU), least agreement first


def update_agreement(
    store: DatasetStore, taxonomy: Taxonomy, settings: AgreementSettings | None = None
) -> StreamedAgreement:
    """The agreement report of the stored corpus, one batch's masks in memory at a time, written.

    A gold image is in one batch, so a batch's :func:`agreement_evidence` is made once from its
    corpus part and kept under ``tables/agreement/batches/<batch>/`` while that part and the
    Boundary IoU band are unchanged; the report is the evidence of every batch summed (a few rows
    per batch, class and annotator, and one per gold image). A threshold or ``min_instances``
    changed makes no batch again.
    """
    from dataset_pipeline.annotation_corpus import corpus_batches, corpus_part_keys, mask_origins
    from dataset_pipeline.batch_parts import update_parts

    settings = settings or AgreementSettings()

    def make(batch: str) -> dict:
        annotations = store.read_parquet(corpus_part_keys(batch)[0])
        for name, table in agreement_evidence(annotations, settings).items():
            store.write_parquet(layout.stage_part_key(STAGE, batch, f"{name}.parquet"), table)
        return {"origins": mask_origins(annotations).to_dict("records")}

    batches = corpus_batches(store)
    shape = (PART_VERSION, settings.boundary, settings.boundary_px_at_640x480)
    figures, made = update_parts(
        store, STAGE, batches, lambda batch: [corpus_part_keys(batch)[0]], shape, make
    )
    evidence = {
        name: pd.concat(
            [store.read_parquet(layout.stage_part_key(STAGE, b, f"{name}.parquet")) for b in batches]
            or [table.frame()],
            ignore_index=True,
        ).pipe(table.cast)
        for name, table in schemas.AGREEMENT_EVIDENCE.items()
    }
    report = agreement_from_evidence(evidence, taxonomy, settings)
    write_report(store, report)
    images = evidence["images"].sort_values(["disagreement", "image_id"], ascending=[False, True])
    origins = [r for f in figures for r in f["origins"]]
    return StreamedAgreement(
        report=report,
        batches=batches,
        made=made,
        origins=pd.DataFrame(origins) if origins else mask_origins(pd.DataFrame()),
        worst=[
            (r.batch, r.image_id, float(r.mean_pairwise_iou)) for r in images.head(WORST_COUNT).itertuples()
        ],
    )


def thresholds_verdict(per_class: pd.DataFrame, settings: dict[str, object] | None = None) -> Verdict:
    """Every class with enough gold instances meets its agreement threshold (mean pairwise IoU).

    ``settings``: the agreement rules in force (per-class threshold overrides, the gold instances a
    class needs), named by a refusal beside the taxonomy's own thresholds."""
    counted = per_class[per_class.instances >= per_class.min_instances]
    failing = counted[~counted.passed]
    too_few = per_class[per_class.instances < per_class.min_instances]
    if len(failing):
        summary = "below threshold: " + "; ".join(
            f"{r['class']} IoU {r.mean_pairwise_iou:.3f} < {r.threshold:.2f} (boundary IoU {r.boundary_iou:.3f}, n={r.instances})"
            for _, r in failing.iterrows()
        )
    else:
        minimum = int(per_class.min_instances.iloc[0]) if len(per_class) else 0
        summary = f"all {len(counted)} classes with >= {minimum} gold instances meet their thresholds"
    if len(too_few):
        summary += "; too few gold instances to judge: " + ", ".join(
            f"{r['class']} (n={r.instances})" for _, r in too_few.iterrows()
        )
    return Verdict(
        passed=failing.empty,
        summary=summary,
        figures={"failing_classes": len(failing), "judged_classes": len(counted)},
        tables={"per class": per_class[["class", "mean_pairwise_iou", "threshold", "instances", "passed"]]},
        settings=dict(settings or {}),
    )


def annotators_verdict(per_annotator: pd.DataFrame) -> Verdict:
    """No annotator is flagged (velocity, unrefined pre-masks, first-pass acceptance)."""
    flagged = per_annotator[per_annotator.flagged] if "flagged" in per_annotator else per_annotator.iloc[:0]
    return Verdict(
        passed=flagged.empty,
        summary="; ".join(f"{r.annotator_id}: {r.flags}" for r in flagged.itertuples())
        or "no annotator flagged",
        figures={"flagged": len(flagged)},
    )

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
from dataset_pipeline.masks import decode_mask, mask_bbox
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

    def band(self, height: int, width: int) -> int:
        """The boundary band in pixels for an image of this size (2 px at 640x480 by default)."""
        return max(1, int(round(self.boundary_px_at_640x480 * float(np.hypot(height, width)) / 800.0)))


def _rle(row) -> dict:
    return {"size": [int(row.height), int(row.width)], "counts": row.rle.encode("ascii")}


def _union(rles: list[dict]) -> dict | None:
    from pycocotools import mask as mask_utils

    if not rles:
        return None
    return rles[0] if len(rles) == 1 else mask_utils.merge(rles, intersect=False)


def _area(rle: dict | None) -> int:
    from pycocotools import mask as mask_utils

    return 0 if rle is None else int(mask_utils.area(rle))


def rle_pair_iou(a: dict | None, b: dict | None) -> float | None:
    """IoU of two RLE masks; 0 when one is empty, None when both are."""
    from pycocotools import mask as mask_utils

    area_a, area_b = _area(a), _area(b)
    if area_a == 0 and area_b == 0:
        return None
    if area_a == 0 or area_b == 0:
        return 0.0
    return float(mask_utils.iou([a], [b], [0])[0][0])


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
    return _union(parts)


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


@dataclass
class AgreementReport:
    per_class: pd.DataFrame
    per_annotator: pd.DataFrame
    per_batch: pd.DataFrame
    per_image: pd.DataFrame  # image_id, disagreement, annotators

    def failing_classes(self) -> pd.DataFrame:
        counted = self.per_class[self.per_class.instances >= self.per_class.min_instances]
        return counted[~counted.passed]


def compute_agreement(
    annotations: pd.DataFrame, taxonomy: Taxonomy, settings: AgreementSettings | None = None
) -> AgreementReport:
    """The agreement report of a corpus (its gold images are those with 2+ annotators)."""
    settings = settings or AgreementSettings()
    pair_ious: dict[int, list[float]] = defaultdict(list)
    pair_boundary: dict[int, list[float]] = defaultdict(list)
    consensus_ious: dict[tuple[str, int], list[float]] = defaultdict(list)
    consensus_by_batch: dict[tuple[str, str], list[float]] = defaultdict(list)
    instances: dict[int, int] = defaultdict(int)
    images_per_class: dict[int, set] = defaultdict(set)
    per_image = []
    from pycocotools import mask as mask_utils

    gold = annotations[annotations.groupby("image_id").annotator_id.transform("nunique") >= 2]
    gold = gold.sort_values("image_id", kind="stable")
    # Plain arrays, not pandas rows: the loop below runs once per gold image.
    image_ids = gold.image_id.to_numpy()
    annotator_ids = gold.annotator_id.to_numpy()
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
        for index in range(start, stop):
            grouped[int(class_ids[index])][annotator_ids[index]].append(rles[index])
        image_pair_ious = []
        for class_id, drawn in grouped.items():
            instances[class_id] += sum(len(v) for v in drawn.values())
            images_per_class[class_id].add(image_id)
            masks = {a: _union(v) for a, v in drawn.items()}
            present = [a for a in annotators if a in masks]
            matrix = mask_utils.iou(
                [masks[a] for a in present], [masks[a] for a in present], [0] * len(present)
            )
            matrix = np.asarray(matrix, dtype=np.float64).reshape(len(present), len(present))
            position = {a: i for i, a in enumerate(present)}
            for a, b in itertools.combinations(annotators, 2):
                if a in position and b in position:
                    iou = float(matrix[position[a], position[b]])
                elif a in position or b in position:
                    iou = 0.0  # one of the pair did not draw the class
                else:
                    continue  # neither did (a third annotator drew it): no evidence for this pair
                pair_ious[class_id].append(iou)
                image_pair_ious.append(iou)
                if settings.boundary:
                    biou = boundary_iou(masks.get(a), masks.get(b), d)
                    if biou is not None:
                        pair_boundary[class_id].append(biou)
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
                    consensus_ious[(annotator, class_id)].append(consensus_iou)
                    consensus_by_batch[(batch, annotator)].append(consensus_iou)
        per_image.append(
            {
                "image_id": image_id,
                "annotators": len(annotators),
                "mean_pairwise_iou": float(np.mean(image_pair_ious)) if image_pair_ious else np.nan,
                "disagreement": 1 - float(np.mean(image_pair_ious)) if image_pair_ious else 0.0,
            }
        )

    rows = []
    for cls in taxonomy.foreground:
        ious = pair_ious.get(cls.id, [])
        threshold = float(settings.thresholds.get(cls.name, cls.agreement_threshold))
        mean = float(np.mean(ious)) if ious else np.nan
        per_annotator_consensus = [np.mean(v) for (a, c), v in consensus_ious.items() if c == cls.id]
        rows.append(
            {
                "class_id": cls.id,
                "class": cls.name,
                "category": cls.category,
                "mean_pairwise_iou": round(mean, 4) if ious else np.nan,
                "boundary_iou": round(float(np.mean(pair_boundary[cls.id])), 4)
                if pair_boundary.get(cls.id)
                else np.nan,
                "iou_vs_consensus": round(float(np.mean(per_annotator_consensus)), 4)
                if per_annotator_consensus
                else np.nan,
                "threshold": threshold,
                "passed": bool(ious) and mean >= threshold,
                "instances": instances.get(cls.id, 0),
                "images": len(images_per_class.get(cls.id, ())),
                "pairs": len(ious),
                "min_instances": settings.min_instances,
            }
        )
    per_annotator = annotator_stats(annotations, consensus_ious)
    per_batch = schemas.AGREEMENT_PER_BATCH.frame(
        {
            "batch": b,
            "annotator_id": a,
            "iou_vs_consensus": round(float(np.mean(v)), 4),
            "comparisons": len(v),
        }
        for (b, a), v in sorted(consensus_by_batch.items())
    )
    velocity_by_batch = _batch_velocity(annotations)
    if len(per_batch):
        per_batch = per_batch.merge(velocity_by_batch, on=["batch", "annotator_id"], how="left")
    return AgreementReport(
        per_class=pd.DataFrame(rows),
        per_annotator=per_annotator,
        per_batch=per_batch,
        per_image=schemas.AGREEMENT_PER_IMAGE.frame(per_image),
    )


def _velocity(rows: pd.DataFrame) -> tuple[float, float]:
    """(images/hour, seconds/mask) over the rows' timed images."""
    timed = rows[rows.seconds_spent.notna()]
    if timed.empty:
        return np.nan, np.nan
    seconds = float(timed.seconds_spent.sum())
    images = timed.image_id.nunique()
    return (images / (seconds / 3600.0) if seconds > 0 else np.nan), seconds / len(timed)


def _batch_velocity(annotations: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (batch, annotator), group in annotations.assign(
        batch=annotations.image_id.str.split("/").str[0]
    ).groupby(["batch", "annotator_id"]):
        images_per_hour, _ = _velocity(group)
        rows.append({"batch": batch, "annotator_id": annotator, "images_per_hour": round(images_per_hour, 2)})
    return schemas.BATCH_VELOCITY.frame(rows)


def annotator_stats(annotations: pd.DataFrame, consensus_ious: dict | None = None) -> pd.DataFrame:
    """Per annotator: velocity, refinement, unrefined and acceptance rates, IoU vs consensus, flags."""
    rows = []
    for annotator, group in annotations.groupby("annotator_id"):
        images_per_hour, seconds_per_mask = _velocity(group)
        linked = group[from_premask(group)]
        refinement = float((linked.premask_iou < REFINED_BELOW_IOU).mean()) if len(linked) else np.nan
        unrefined = float((linked.premask_iou >= UNCHANGED_IOU).mean()) if len(linked) else np.nan
        verdicts = group[group.review_accepted.notna()].groupby("image_id").review_accepted.first()
        acceptance = float(verdicts.astype(bool).mean()) if len(verdicts) else np.nan
        consensus = [v for (a, _), values in (consensus_ious or {}).items() if a == annotator for v in values]
        rows.append(
            {
                "annotator_id": annotator,
                "images": group.image_id.nunique(),
                "masks": len(group),
                "images_per_hour": round(images_per_hour, 2),
                "seconds_per_mask": round(seconds_per_mask, 1),
                "refinement_rate": round(refinement, 4),
                "unrefined_rate": round(unrefined, 4),
                "reviewed_images": len(verdicts),
                "acceptance_rate": round(acceptance, 4),
                "iou_vs_consensus": round(float(np.mean(consensus)), 4) if consensus else np.nan,
            }
        )
    table = pd.DataFrame(rows)
    if table.empty:
        return table.assign(flags="")
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


def disagreements_png(
    store: DatasetStore, annotations: pd.DataFrame, per_image: pd.DataFrame, count: int = 6
) -> bytes | None:
    """The gold images where annotators agree least, each annotator's outlines in their own colour,
    with the colour key under them; None without gold images."""
    if per_image.empty:
        return None
    worst = per_image.sort_values("disagreement", ascending=False).head(count)
    images = store.read_parquet(layout.CORPUS_IMAGES_KEY)
    annotators = sorted(annotations.annotator_id.unique())
    colour_of = {a: distinct_colour(i) for i, a in enumerate(annotators)}
    tiles, captions = [], []
    chosen = images[images.image_id.isin(worst.image_id)]
    for image_id, rgb in iter_images(store, chosen):
        rows = annotations[annotations.image_id == image_id]
        masks = [decode_mask(r.rle, r.height, r.width) for r in rows.itertuples()]
        tiles.append(overlay(rgb, masks, [colour_of[a] for a in rows.annotator_id], alpha=0.0))
        score = float(worst.set_index("image_id").loc[image_id, "mean_pairwise_iou"])
        captions.append(f"{image_id.rsplit('/', 1)[-1]} IoU {score:.2f}")
    if not tiles:
        return None
    sheet = contact_sheet(tiles, captions, columns=3, cell=320)
    return png_bytes(with_legend(sheet, annotators, [colour_of[a] for a in annotators]))


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

"""quality_report: the corpus's quality checks, in the validator shape statistics → report → summary.

Each check yields :class:`QcIssue` rows naming the image and the annotation:

* ``completeness``     every captured image has at least one annotation;
* ``class_ids_valid``  class ids are foreground ids of the taxonomy;
* ``min_area``         a mask has at least ``min_area_px`` pixels;
* ``thin_width``       a mask is at least its class's ``min_width_px`` thick somewhere (its
                       largest inscribed width, 2 x the distance transform's maximum - 1);
* ``same_z_overlap``   two instances of one annotator on one image with the same z_order
                       overlap by more than ``overlap_tolerance`` of the smaller one;
* ``mask_size``        a mask's size is its image's size;
* ``duplicate_images`` no two images have the same sha256.

The non-blocking statistic is each annotator's *refinement rate*: the share of the
pre-masks they started from that they edited (premask_iou < 0.9), flagged above 40%.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dataset_pipeline import layout, schemas
from dataset_pipeline.figures import contact_sheet, overlay, png_bytes, with_legend
from dataset_pipeline.images import iter_images
from dataset_pipeline.masks import decode_mask, mask_bbox, rle_areas, rle_iou
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.taxonomy import Taxonomy
from dataset_pipeline.verdicts import Verdict

BLOCKING_CHECKS: tuple[str, ...] = (
    "completeness",
    "class_ids_valid",
    "min_area",
    "thin_width",
    "same_z_overlap",
    "mask_size",
    "duplicate_images",
)
#: What it means that a check found nothing to look at.
NOTHING: dict[str, str] = {
    "completeness": "no captured image",
    "class_ids_valid": "no annotation",
    "min_area": "no annotation",
    "thin_width": "no annotation of a class with a minimum width",
    "same_z_overlap": "no two instances of one annotator share a z_order on an image",
    "mask_size": "no annotation",
    "duplicate_images": "no captured image",
}
REFINED_BELOW_IOU = 0.9
REFINEMENT_FLAG = 0.40


@dataclass(frozen=True)
class QcIssue:
    check: str
    image_id: str
    annotation_id: str | None
    detail: str


@dataclass
class QualityReport:
    issues: pd.DataFrame  # check, image_id, annotation_id, detail
    checked: dict[str, int]  # check -> how many items it looked at
    refinement: pd.DataFrame  # annotator_id, assisted, refined, refinement_rate, flagged
    stats: dict[str, float] = field(default_factory=dict)

    def failed(self, check: str) -> pd.DataFrame:
        return self.issues[self.issues.check == check]

    def summary_table(self) -> pd.DataFrame:
        """Per check: items looked at, failures, pass rate."""
        rows = []
        for check in BLOCKING_CHECKS:
            failures = len(self.failed(check))
            n = self.checked.get(check, 0)
            rows.append(
                {
                    "check": check,
                    "checked": n,
                    "failed": failures,
                    "pass_rate": round(1 - failures / n, 4) if n else 1.0,
                }
            )
        return pd.DataFrame(rows)

    def describe(self, check: str, limit: int = 15) -> str:
        """The check's outcome with the offending image and annotation ids."""
        failed = self.failed(check)
        checked = self.checked.get(check, 0)
        if failed.empty:
            return (
                f"{check}: all {checked} passed"
                if checked
                else f"{check}: nothing to check ({NOTHING[check]})"
            )
        lines = [f"{check}: {len(failed)} of {self.checked.get(check, 0)} failed"]
        for row in failed.head(limit).itertuples():
            lines.append(
                f"- image {row.image_id}"
                + (f", annotation {row.annotation_id}" if row.annotation_id else "")
                + f": {row.detail}"
            )
        if len(failed) > limit:
            lines.append(f"- ... and {len(failed) - limit} more")
        return "\n".join(lines)


def max_inscribed_width(mask: np.ndarray) -> float:
    """The mask's largest thickness in pixels (a 1-pixel line gives 1).

    >>> m = np.zeros((9, 20), bool); m[4, 2:18] = True
    >>> max_inscribed_width(m)
    1.0
    """
    import cv2

    box = mask_bbox(mask)
    if box is None:
        return 0.0
    x0, y0, x1, y1 = box
    padded = np.pad(mask[y0:y1, x0:x1].astype(np.uint8), 1)  # only the object's box: much less work
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return float(2 * distance.max() - 1)


def run_quality_checks(
    annotations: pd.DataFrame,
    images: pd.DataFrame,
    taxonomy: Taxonomy,
    *,
    min_area_px: int = 20,
    overlap_tolerance: float = 0.05,
) -> QualityReport:
    """Run every check on the corpus (annotations and captured images). Streams image by image."""
    issues: list[QcIssue] = []
    checked = {check: 0 for check in BLOCKING_CHECKS}
    sizes = (
        images.set_index("image_id")[["height", "width"]]
        if len(images)
        else pd.DataFrame(columns=["height", "width"])
    )

    annotated = set(annotations.image_id) if len(annotations) else set()
    checked["completeness"] = len(images)
    for image_id in images.image_id if len(images) else []:
        if image_id not in annotated:
            issues.append(QcIssue("completeness", image_id, None, "no annotation"))

    checked["duplicate_images"] = len(images)
    if len(images):
        duplicated = images[images.sha256.duplicated(keep=False)]
        for sha, group in duplicated.groupby("sha256"):
            for image_id in group.image_id:
                issues.append(
                    QcIssue(
                        "duplicate_images",
                        image_id,
                        None,
                        f"same sha256 {sha[:12]} as {sorted(set(group.image_id) - {image_id})}",
                    )
                )

    valid = {c.id for c in taxonomy.foreground}
    min_width = {c.id: c.min_width_px for c in taxonomy.foreground}
    names = {c.id: c.name for c in taxonomy.classes}
    if len(annotations):
        areas = rle_areas(annotations.height, annotations.width, annotations.rle)
        annotations = annotations.assign(area_px=areas)
    for image_id, group in annotations.groupby("image_id", sort=False) if len(annotations) else []:
        expected = tuple(sizes.loc[image_id]) if image_id in sizes.index else None
        for row in group.itertuples():
            checked["class_ids_valid"] += 1
            checked["mask_size"] += 1
            checked["min_area"] += 1
            if row.class_id not in valid:
                issues.append(
                    QcIssue(
                        "class_ids_valid",
                        image_id,
                        row.annotation_id,
                        f"class id {row.class_id} is not one of {sorted(valid)}",
                    )
                )
            if expected is None or (row.height, row.width) != expected:
                issues.append(
                    QcIssue(
                        "mask_size",
                        image_id,
                        row.annotation_id,
                        f"mask {row.width}x{row.height}, image {'missing' if expected is None else f'{expected[1]}x{expected[0]}'}",
                    )
                )
                continue
            if row.area_px < min_area_px:
                issues.append(
                    QcIssue("min_area", image_id, row.annotation_id, f"{row.area_px} px < {min_area_px} px")
                )
            need = min_width.get(row.class_id, 1)
            if need > 1 and row.area_px > 0:
                checked["thin_width"] += 1
                width = max_inscribed_width(decode_mask(row.rle, row.height, row.width))
                if width < need:
                    issues.append(
                        QcIssue(
                            "thin_width",
                            image_id,
                            row.annotation_id,
                            f"{names.get(row.class_id, row.class_id)} is {width:.0f} px thick, min {need} px",
                        )
                    )
        for (_, _), layer in group.groupby(["annotator_id", "z_order"]):
            if len(layer) < 2:
                continue
            rows = list(layer.itertuples())
            for i, a in enumerate(rows[:-1]):
                others = rows[i + 1 :]
                checked["same_z_overlap"] += len(others)
                ious = rle_iou(a.rle, [b.rle for b in others], a.height, a.width)
                for b, iou in zip(others, ious, strict=True):
                    if iou <= 0:
                        continue
                    inter = iou * (a.area_px + b.area_px) / (1 + iou)
                    share = inter / max(1, min(a.area_px, b.area_px))
                    if share > overlap_tolerance:
                        issues.append(
                            QcIssue(
                                "same_z_overlap",
                                image_id,
                                a.annotation_id,
                                f"overlaps {b.annotation_id} by {share:.0%} of the smaller at z_order {a.z_order}",
                            )
                        )

    frame = schemas.QUALITY_ISSUES.frame(i.__dict__ for i in issues)
    return QualityReport(issues=frame, checked=checked, refinement=refinement_rates(annotations))


def refinement_rates(annotations: pd.DataFrame) -> pd.DataFrame:
    """Per annotator: pre-masks started from, how many were edited (IoU < 0.9), the rate, the flag."""
    if annotations.empty:
        return schemas.REFINEMENT.frame()
    linked = annotations[
        annotations.premask_id.notna() & ~annotations.assistance.isin(schemas.PROPAGATED_ASSISTANCE)
    ]
    rows = []
    for annotator, group in linked.groupby("annotator_id"):
        refined = int((group.premask_iou < REFINED_BELOW_IOU).sum())
        rate = refined / len(group)
        rows.append(
            {
                "annotator_id": annotator,
                "assisted": len(group),
                "refined": refined,
                "refinement_rate": round(rate, 4),
                "flagged": rate > REFINEMENT_FLAG,
            }
        )
    return schemas.REFINEMENT.frame(rows)


def write_report(store: DatasetStore, report: QualityReport) -> None:
    """Store the issues, the refinement rates and the per-check summary the checks and the card read."""
    store.write_parquet(layout.QUALITY_ISSUES_KEY, report.issues)
    store.write_parquet(layout.REFINEMENT_KEY, report.refinement)
    summary = {c: report.describe(c) for c in BLOCKING_CHECKS} | {"checked": report.checked}
    store.write_bytes(layout.QUALITY_SUMMARY_KEY, json.dumps(summary, indent=2).encode())


def worst_images_png(
    store: DatasetStore,
    annotations: pd.DataFrame,
    images: pd.DataFrame,
    issues: pd.DataFrame,
    taxonomy: Taxonomy,
    count: int = 6,
) -> bytes | None:
    """The images with the most issues (then the most annotators), every annotation outlined in its
    class colour (invalid class ids in white); None for an empty corpus."""
    if images.empty or annotations.empty:
        return None
    issue_counts = issues.image_id.value_counts() if len(issues) else pd.Series(dtype=int)
    annotators = annotations.groupby("image_id").annotator_id.nunique()
    ranking = pd.DataFrame({"issues": issue_counts, "annotators": annotators}).fillna(0)
    chosen = ranking.sort_values(["issues", "annotators"], ascending=False).head(count).index
    palette = taxonomy.palette()
    tiles, captions, shown = [], [], set()
    for image_id, rgb in iter_images(store, images[images.image_id.isin(chosen)]):
        rows = annotations[annotations.image_id == image_id]
        masks = [decode_mask(r.rle, r.height, r.width) for r in rows.itertuples()]
        colours = [palette[int(c)] if 0 <= int(c) < len(palette) else (255, 255, 255) for c in rows.class_id]
        shown |= {int(c) for c in rows.class_id}
        tiles.append(overlay(rgb, masks, colours, alpha=0.0))
        captions.append(f"{image_id.rsplit('/', 1)[-1]} ({int(ranking.loc[image_id, 'issues'])} issues)")
    key = [c for c in taxonomy.foreground if c.id in shown]
    labels = [c.name for c in key] + (["not a class of the taxonomy"] if shown - {c.id for c in key} else [])
    colours = [c.rgb for c in key] + ([(255, 255, 255)] if len(labels) > len(key) else [])
    return png_bytes(with_legend(contact_sheet(tiles, captions, columns=3, cell=320), labels, colours))


#: The quality rules (``run_quality_checks``' parameters) and taxonomy fields that decide each check.
CHECK_SETTINGS: dict[str, tuple[str, ...]] = {
    "class_ids_valid": ("taxonomy.path",),
    "min_area": ("min_area_px",),
    "thin_width": ("taxonomy.path",),  # each class's min_width_px
    "same_z_overlap": ("overlap_tolerance",),
}


def check_verdict(issues: pd.DataFrame, summary: dict, check: str, settings: dict[str, object]) -> Verdict:
    """One blocking check's outcome from the stored report (offending image and annotation ids);
    ``settings`` are the values in force of :data:`CHECK_SETTINGS`' names."""
    failed = issues[issues.check == check]
    return Verdict(
        passed=failed.empty,
        summary=summary[check],
        figures={"checked": summary["checked"].get(check, 0), "failed": len(failed)},
        tables={"offending": failed[["image_id", "annotation_id", "detail"]].head(25)},
        settings={name: settings[name] for name in CHECK_SETTINGS.get(check, ()) if name in settings},
    )


def refinement_verdict(refinement: pd.DataFrame) -> Verdict:
    """Flags annotators who edited over 40% of the pre-masks they started from."""
    flagged = refinement[refinement.flagged]
    return Verdict(
        passed=flagged.empty,
        summary=(
            "refinement over 40%: "
            + ", ".join(
                f"{r.annotator_id} {r.refinement_rate:.0%} of {r.assisted}" for r in flagged.itertuples()
            )
            if len(flagged)
            else "no annotator over 40% refinement"
        ),
        tables={"per annotator": refinement.head(50)},
    )

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
    #: Failures per check where ``issues`` holds only the first of each (:func:`update_report`).
    failed_counts: dict[str, int] | None = None

    def failed(self, check: str) -> pd.DataFrame:
        return self.issues[self.issues.check == check]

    def failures(self, check: str) -> int:
        if self.failed_counts is not None:
            return self.failed_counts.get(check, 0)
        return len(self.failed(check))

    @property
    def total_failures(self) -> int:
        return sum(self.failures(c) for c in BLOCKING_CHECKS)

    def summary_table(self) -> pd.DataFrame:
        """Per check: items looked at, failures, pass rate."""
        rows = []
        for check in BLOCKING_CHECKS:
            failures = self.failures(check)
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
        failures = self.failures(check)
        lines = [f"{check}: {failures} of {self.checked.get(check, 0)} failed"]
        for row in failed.head(limit).itertuples():
            lines.append(
                f"- image {row.image_id}"
                + (f", annotation {row.annotation_id}" if row.annotation_id else "")
                + f": {row.detail}"
            )
        if failures > limit:
            lines.append(f"- ... and {failures - limit} more")
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
    issues.extend(duplicate_issues(images))

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


def refinement_from_counts(counts: pd.DataFrame) -> pd.DataFrame:
    """Per annotator: the rate and the flag from ``assisted`` and ``refined`` counts, summed over
    the rows of one annotator (batch parts' :func:`refinement_rates` add up; rates do not).

    >>> counts = pd.DataFrame({"annotator_id": ["a", "a", "b"], "assisted": [4, 6, 5], "refined": [1, 4, 1]})
    >>> refinement_from_counts(counts)[["annotator_id", "assisted", "refined", "flagged"]].values.tolist()
    [['a', 10, 5, True], ['b', 5, 1, False]]
    """
    if counts.empty:
        return schemas.REFINEMENT.frame()
    summed = counts.groupby("annotator_id", as_index=False)[["assisted", "refined"]].sum()
    rate = summed.refined / summed.assisted
    return schemas.REFINEMENT.frame(
        summed.assign(refinement_rate=rate.round(4), flagged=rate > REFINEMENT_FLAG).to_dict("records")
    )


def duplicate_issues(images: pd.DataFrame) -> list[QcIssue]:
    """``duplicate_images``: each image whose sha256 another image has, naming the others."""
    duplicated = images[images.sha256.duplicated(keep=False)] if len(images) else images
    issues = []
    for sha, group in duplicated.groupby("sha256"):
        for image_id in group.image_id:
            others = sorted(set(group.image_id) - {image_id})
            issues.append(QcIssue("duplicate_images", image_id, None, f"same sha256 {sha[:12]} as {others}"))
    return issues


#: Bump when a batch's checks are made differently: every batch's part is made again.
PART_VERSION = 1
STAGE = "quality"
#: How many images the worst-images sheet shows.
WORST_COUNT = 6


@dataclass
class StreamedReport:
    """The stored report, made batch by batch (:func:`update_report`), with what the asset shows."""

    report: QualityReport
    batches: list[str]
    made: list[str]  # the batches whose part was made again; the rest were kept
    images: int
    annotations: int
    origins: pd.DataFrame  # mask_origins, per batch
    worst: list[tuple[str, str, int]]  # (batch, image_id, issues), the sheet's images, worst first


def update_report(
    store: DatasetStore,
    taxonomy: Taxonomy,
    *,
    min_area_px: int = 20,
    overlap_tolerance: float = 0.05,
) -> StreamedReport:
    """The quality report of the stored corpus, one batch in memory at a time.

    An image is in one batch, so every check but ``duplicate_images`` is decided within its
    batch: a batch's issues, counts, per-annotator refinement counts, mask origins and its
    worst-image candidates are made once from its corpus part (``tables/corpus/batches/<batch>/``)
    and kept under ``tables/quality/batches/<batch>/`` while that part, the rules and the
    taxonomy's classes are unchanged. ``duplicate_images`` reads only the ``image_id`` and
    ``sha256`` columns of the corpus's images (about 100 bytes an image); the refinement rate is
    summed from the batches' counts.
    """
    from dataset_pipeline.annotation_corpus import corpus_batches, corpus_part_keys, mask_origins
    from dataset_pipeline.batch_parts import update_parts
    from dataset_pipeline.formats.arrow import concat_parquet

    def make(batch: str) -> dict:
        annotations, images = (store.read_parquet(k) for k in corpus_part_keys(batch))
        part = run_quality_checks(
            annotations, images, taxonomy, min_area_px=min_area_px, overlap_tolerance=overlap_tolerance
        )
        issues = part.issues[part.issues.check != "duplicate_images"]
        store.write_parquet(layout.stage_part_key(STAGE, batch, "issues.parquet"), issues)
        per_image = pd.DataFrame(
            {
                "issues": issues.image_id.value_counts() if len(issues) else pd.Series(dtype=int),
                "annotators": annotations.groupby("image_id").annotator_id.nunique()
                if len(annotations)
                else pd.Series(dtype=int),
            }
        ).fillna(0)
        candidates = per_image.sort_values(["issues", "annotators"], ascending=False).head(WORST_COUNT)
        return {
            "images": len(images),
            "annotations": len(annotations),
            "checked": {c: n for c, n in part.checked.items() if c != "duplicate_images"},
            "refinement": part.refinement[["annotator_id", "assisted", "refined"]].to_dict("records"),
            "origins": mask_origins(annotations).to_dict("records"),
            "candidates": [[str(i), int(r.issues), int(r.annotators)] for i, r in candidates.iterrows()],
        }

    classes = [(c.id, c.min_width_px) for c in taxonomy.foreground]
    batches = corpus_batches(store)
    settings = (PART_VERSION, classes, min_area_px, overlap_tolerance)
    figures, made = update_parts(
        store, STAGE, batches, lambda batch: list(corpus_part_keys(batch)), settings, make
    )

    images_checked, shared = _shared_checksums(store, batches)
    duplicates = schemas.QUALITY_ISSUES.frame(i.__dict__ for i in duplicate_issues(shared))
    store.write_parquet(layout.QUALITY_DUPLICATES_KEY, duplicates)
    parts = [layout.stage_part_key(STAGE, b, "issues.parquet") for b in batches]
    concat_parquet(store, [*parts, layout.QUALITY_DUPLICATES_KEY], layout.QUALITY_ISSUES_KEY)
    issues, failed_counts = _first_issues(store, [*parts, layout.QUALITY_DUPLICATES_KEY])
    checked = {check: sum(f["checked"].get(check, 0) for f in figures) for check in BLOCKING_CHECKS}
    checked["duplicate_images"] = images_checked
    refinement = refinement_from_counts(pd.DataFrame([r for f in figures for r in f["refinement"]]))
    report = QualityReport(issues=issues, checked=checked, refinement=refinement, failed_counts=failed_counts)
    store.write_parquet(layout.REFINEMENT_KEY, report.refinement)
    write_summary(store, report)

    duplicated = set(duplicates.image_id)
    candidates = [
        (batch, image_id, n + (image_id in duplicated), annotators)
        for batch, f in zip(batches, figures, strict=True)
        for image_id, n, annotators in f["candidates"]
    ]
    candidates.sort(key=lambda c: (c[2], c[3]), reverse=True)
    origins = [r for f in figures for r in f["origins"]]
    return StreamedReport(
        report=report,
        batches=batches,
        made=made,
        images=sum(f["images"] for f in figures),
        annotations=sum(f["annotations"] for f in figures),
        origins=pd.DataFrame(origins) if origins else mask_origins(pd.DataFrame()),
        worst=[(b, i, n) for b, i, n, _ in candidates[:WORST_COUNT]],
    )


def _shared_checksums(store: DatasetStore, batches: list[str]) -> tuple[int, pd.DataFrame]:
    """The corpus's image count and its images (``image_id``, ``sha256``) whose checksum another
    image has. Each batch's checksums are read as 64-bit prefixes (8 bytes an image, the whole
    corpus at once); only the batches' rows whose prefix is shared are read again, as pandas
    rows (:func:`duplicate_issues` compares whole checksums)."""
    from dataset_pipeline.annotation_corpus import corpus_part_keys
    from dataset_pipeline.formats.arrow import hex_words

    def prefixes(batch: str, table) -> np.ndarray:
        return hex_words(table.column("sha256"), f"{store.url(corpus_part_keys(batch)[1])}: field sha256")

    words = [
        prefixes(batch, store.read_table(corpus_part_keys(batch)[1], columns=["sha256"])) for batch in batches
    ]
    every = np.concatenate(words) if words else np.zeros(0, np.uint64)
    values, counts = np.unique(every, return_counts=True)
    shared = values[counts > 1]
    rows = [pd.DataFrame(columns=["image_id", "sha256"])]
    for batch, mine in zip(batches, words, strict=True):
        if np.isin(mine, shared).any():
            table = store.read_table(corpus_part_keys(batch)[1], columns=["image_id", "sha256"])
            rows.append(table.to_pandas()[np.isin(prefixes(batch, table), shared)])
    return len(every), pd.concat(rows, ignore_index=True)


def _first_issues(
    store: DatasetStore, keys: list[str], keep: int = 25
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The first ``keep`` issues of each check over the parts ``keys`` (one read at a time, in
    Arrow) and every check's count of failures: a corpus with many failures is counted, not
    held, and only the rows kept become pandas objects."""
    import pyarrow.compute as pc

    counts = {check: 0 for check in BLOCKING_CHECKS}
    firsts = []
    for key in keys:
        part = store.read_table(key)
        found = pc.value_counts(part.column("check"))
        for check, n in zip(
            found.field("values").to_pylist(), found.field("counts").to_pylist(), strict=True
        ):
            wanted = max(0, keep - counts.get(check, 0))
            if wanted:
                rows = part.filter(pc.equal(part.column("check"), check)).slice(0, wanted)
                firsts.append(schemas.QUALITY_ISSUES.cast(rows.to_pandas()))
            counts[check] = counts.get(check, 0) + n
    frame = pd.concat(firsts, ignore_index=True) if firsts else schemas.QUALITY_ISSUES.frame()
    return frame, counts


def write_summary(store: DatasetStore, report: QualityReport) -> None:
    summary = {c: report.describe(c) for c in BLOCKING_CHECKS} | {"checked": report.checked}
    store.write_bytes(layout.QUALITY_SUMMARY_KEY, json.dumps(summary, indent=2).encode())


def write_report(store: DatasetStore, report: QualityReport) -> None:
    """Store the issues, the refinement rates and the per-check summary the checks and the card read."""
    store.write_parquet(layout.QUALITY_ISSUES_KEY, report.issues)
    store.write_parquet(layout.REFINEMENT_KEY, report.refinement)
    write_summary(store, report)


def worst_images_png(
    store: DatasetStore, worst: list[tuple[str, str, int]], taxonomy: Taxonomy
) -> bytes | None:
    """The images of ``worst`` ((batch, image_id, issues), :attr:`StreamedReport.worst`), every
    annotation outlined in its class colour (invalid class ids in white); only their batches'
    corpus parts are read. None when there is none."""
    from dataset_pipeline.annotation_corpus import corpus_part_keys

    if not worst:
        return None
    palette = taxonomy.palette()
    tiles, captions, shown = [], [], set()
    for batch in dict.fromkeys(b for b, _, _ in worst):
        chosen = {i: n for b, i, n in worst if b == batch}
        annotations, images = (store.read_parquet(k) for k in corpus_part_keys(batch))
        annotations = annotations[annotations.image_id.isin(chosen)] if len(annotations) else annotations
        for image_id, rgb in iter_images(store, images[images.image_id.isin(chosen)]):
            rows = annotations[annotations.image_id == image_id] if len(annotations) else annotations
            masks = [decode_mask(r.rle, r.height, r.width) for r in rows.itertuples()]
            colours = [
                palette[int(c)] if 0 <= int(c) < len(palette) else (255, 255, 255) for c in rows.class_id
            ]
            shown |= {int(c) for c in rows.class_id}
            tiles.append(overlay(rgb, masks, colours, alpha=0.0))
            captions.append(f"{image_id.rsplit('/', 1)[-1]} ({chosen[image_id]} issues)")
    if not tiles:
        return None
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

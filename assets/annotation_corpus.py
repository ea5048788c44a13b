"""annotation_corpus and quality_report: all batches together, and the checks that gate them."""

import json

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AutomationCondition,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from assets.raw_captures import STORE_RETRY
from assets.reporting import picture_metadata, table_metadata
from assets.reviewed_annotations import reviewed_annotations
from assets.tags import CPU_TAGS
from dataset_pipeline.annotation_corpus import (
    CORPUS_ANNOTATIONS_KEY,
    CORPUS_IMAGES_KEY,
    build_corpus,
    write_corpus,
)
from dataset_pipeline.figures import contact_sheet, overlay, png_bytes
from dataset_pipeline.masks import decode_mask
from dataset_pipeline.quality_report import BLOCKING_CHECKS, run_quality_checks
from dataset_pipeline.sam2_premasks import iter_images
from dataset_pipeline.store import join_key
from resources import DatasetStoreResource, QualityRules, TaxonomyResource

QUALITY_ISSUES_KEY = join_key("tables", "quality", "issues.parquet")
QUALITY_SUMMARY_KEY = join_key("tables", "quality", "summary.json")
REFINEMENT_KEY = join_key("tables", "quality", "refinement.parquet")


@asset(
    op_tags=CPU_TAGS,
    retry_policy=STORE_RETRY,
    deps=[reviewed_annotations],
    group_name="quality",
    kinds={"parquet"},
    automation_condition=AutomationCondition.eager(),
    description="Every batch's annotations and captures in one corpus; images labelled by 2+ annotators are gold.",
)
def annotation_corpus(
    context: AssetExecutionContext, dataset_store: DatasetStoreResource
) -> MaterializeResult:
    store = dataset_store.get_store()
    corpus = build_corpus(store)
    write_corpus(store, corpus)
    table = corpus.annotations
    return MaterializeResult(
        metadata={
            "batches": len(corpus.batches),
            "images": len(corpus.images),
            "annotations": len(table),
            "gold_images": int(table[table.is_gold].image_id.nunique()) if len(table) else 0,
            "annotators": int(table.annotator_id.nunique()) if len(table) else 0,
            "corpus_annotations": MetadataValue.path(store.url(CORPUS_ANNOTATIONS_KEY)),
            "corpus_images": MetadataValue.path(store.url(CORPUS_IMAGES_KEY)),
        }
    )


@asset(
    op_tags=CPU_TAGS,
    retry_policy=STORE_RETRY,
    deps=[annotation_corpus],
    group_name="quality",
    kinds={"parquet"},
    automation_condition=AutomationCondition.eager(),
    description="Completeness, valid classes, minimum area, thin-structure width, same-z overlaps, mask sizes "
    "and duplicate images over the whole corpus; per-annotator refinement rates.",
)
def quality_report(
    context: AssetExecutionContext,
    dataset_store: DatasetStoreResource,
    taxonomy: TaxonomyResource,
    quality_rules: QualityRules,
) -> MaterializeResult:
    store = dataset_store.get_store()
    classes = taxonomy.load()
    annotations = store.read_parquet(CORPUS_ANNOTATIONS_KEY)
    images = store.read_parquet(CORPUS_IMAGES_KEY)
    report = run_quality_checks(
        annotations,
        images,
        classes,
        min_area_px=quality_rules.min_area_px,
        overlap_tolerance=quality_rules.overlap_tolerance,
    )
    store.write_parquet(QUALITY_ISSUES_KEY, report.issues)
    store.write_parquet(REFINEMENT_KEY, report.refinement)
    summary = report.summary_table()
    store.write_bytes(
        QUALITY_SUMMARY_KEY,
        json.dumps(
            {c: report.describe(c) for c in BLOCKING_CHECKS} | {"checked": report.checked}, indent=2
        ).encode(),
    )
    metadata = {
        "annotations": len(annotations),
        "images": len(images),
        "issues": len(report.issues),
        "checks": table_metadata(summary),
        "refinement per annotator": table_metadata(report.refinement),
        "issues_table": MetadataValue.path(store.url(QUALITY_ISSUES_KEY)),
    }
    sheet = _worst_images(store, annotations, images, report.issues, classes)
    if sheet is not None:
        metadata |= picture_metadata(
            store, join_key("previews", "quality_report", "worst_images.png"), sheet, "worst images"
        )
    return MaterializeResult(metadata=metadata)


def _worst_images(
    store, annotations: pd.DataFrame, images: pd.DataFrame, issues: pd.DataFrame, classes, count: int = 6
):
    """The images with the most issues (then the most annotators) with every annotation outlined."""
    if images.empty or annotations.empty:
        return None
    issue_counts = issues.image_id.value_counts() if len(issues) else pd.Series(dtype=int)
    annotators = annotations.groupby("image_id").annotator_id.nunique()
    ranking = pd.DataFrame({"issues": issue_counts, "annotators": annotators}).fillna(0)
    chosen = ranking.sort_values(["issues", "annotators"], ascending=False).head(count).index
    palette = classes.palette()
    tiles, captions = [], []
    for image_id, rgb in iter_images(store, images[images.image_id.isin(chosen)]):
        rows = annotations[annotations.image_id == image_id]
        masks = [decode_mask(r.rle, r.height, r.width) for r in rows.itertuples()]
        colours = [palette[int(c)] if 0 <= int(c) < len(palette) else (255, 255, 255) for c in rows.class_id]
        outlined = overlay(rgb, masks, colours, alpha=0.0)  # invalid class ids in white
        tiles.append(outlined)
        captions.append(f"{image_id.rsplit('/', 1)[-1]} ({int(ranking.loc[image_id, 'issues'])} issues)")
    return png_bytes(contact_sheet(tiles, captions, columns=3, cell=320))


def _report_check(check: str, blocking: bool = True):
    @asset_check(
        asset=quality_report,
        name=f"qc_{check}",
        blocking=blocking,
        description=f"quality_report: {check.replace('_', ' ')} (lists the offending image and annotation ids).",
    )
    def _check(context: AssetCheckExecutionContext, dataset_store: DatasetStoreResource) -> AssetCheckResult:
        store = dataset_store.get_store()
        issues = store.read_parquet(QUALITY_ISSUES_KEY)
        summary = json.loads(store.read_bytes(QUALITY_SUMMARY_KEY))
        failed = issues[issues.check == check]
        return AssetCheckResult(
            passed=failed.empty,
            description=summary[check],
            metadata={
                "checked": summary["checked"].get(check, 0),
                "failed": len(failed),
                "offending": table_metadata(failed[["image_id", "annotation_id", "detail"]], max_rows=25),
            },
        )

    return _check


@asset_check(
    asset=quality_report,
    blocking=False,
    description="Flags annotators who edited over 40% of the pre-masks they started from (premask_iou < 0.9).",
)
def qc_refinement_rate(
    context: AssetCheckExecutionContext, dataset_store: DatasetStoreResource
) -> AssetCheckResult:
    table = dataset_store.get_store().read_parquet(REFINEMENT_KEY)
    flagged = table[table.flagged]
    return AssetCheckResult(
        passed=flagged.empty,
        severity=AssetCheckSeverity.WARN,
        description=(
            "refinement over 40%: "
            + ", ".join(
                f"{r.annotator_id} {r.refinement_rate:.0%} of {r.assisted}" for r in flagged.itertuples()
            )
            if len(flagged)
            else "no annotator over 40% refinement"
        ),
        metadata={"per annotator": table_metadata(table)},
    )


QUALITY_CHECKS = [_report_check(check) for check in BLOCKING_CHECKS] + [qc_refinement_rate]

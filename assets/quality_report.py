"""quality_report: the corpus's quality checks, each one a blocking asset check."""

import json
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetExecutionContext,
    AutomationCondition,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from assets.execution import CPU_TAGS, retried_on_store_outage
from assets.reporting import check_result, picture_metadata, table_metadata
from dataset_pipeline import layout
from dataset_pipeline.quality_report import (
    BLOCKING_CHECKS,
    check_verdict,
    refinement_verdict,
    update_report,
    worst_images_png,
)
from resources import DatasetStoreResource, QualityRules, TaxonomyResource


@asset(
    op_tags=CPU_TAGS,
    deps=["annotation_corpus"],
    group_name="quality",
    kinds={"parquet"},
    automation_condition=AutomationCondition.eager(),
    description="Completeness, valid classes, minimum area, thin-structure width, same-z overlaps, mask sizes "
    "and duplicate images over the whole corpus; per-annotator refinement rates.",
)
@retried_on_store_outage
def quality_report(
    context: AssetExecutionContext,
    dataset_store: DatasetStoreResource,
    taxonomy: TaxonomyResource,
    quality_rules: QualityRules,
) -> MaterializeResult:
    store = dataset_store.get_store()
    classes = taxonomy.load()
    streamed = update_report(
        store,
        classes,
        min_area_px=quality_rules.min_area_px,
        overlap_tolerance=quality_rules.overlap_tolerance,
    )
    report = streamed.report
    metadata: dict[str, Any] = {
        "annotations": streamed.annotations,
        "images": streamed.images,
        "issues": report.total_failures,
        # A batch's checks are made once; a rebuild makes only new or changed batches again.
        "batches made again": f"{len(streamed.made)} of {len(streamed.batches)}",
        "checks": table_metadata(report.summary_table()),
        "refinement per annotator": table_metadata(report.refinement),
        "mask origins": table_metadata(streamed.origins),
        "issues_table": MetadataValue.path(store.url(layout.QUALITY_ISSUES_KEY)),
    }
    sheet = worst_images_png(store, streamed.worst, classes)
    if sheet is not None:
        metadata |= picture_metadata(store, layout.WORST_IMAGES_PREVIEW, sheet, "worst images")
    return MaterializeResult(metadata=metadata)


def _report_check(check: str) -> AssetChecksDefinition:
    @asset_check(
        asset=quality_report,
        name=f"qc_{check}",
        blocking=True,
        description=f"quality_report: {check.replace('_', ' ')} (lists the offending image and annotation ids).",
    )
    def _check(
        context: AssetCheckExecutionContext,
        dataset_store: DatasetStoreResource,
        quality_rules: QualityRules,
        taxonomy: TaxonomyResource,
    ) -> AssetCheckResult:
        store = dataset_store.get_store()
        summary = json.loads(store.read_bytes(layout.QUALITY_SUMMARY_KEY))
        settings = {
            "min_area_px": quality_rules.min_area_px,
            "overlap_tolerance": quality_rules.overlap_tolerance,
            "taxonomy.path": taxonomy.load().source,
        }
        issues = store.read_parquet(layout.QUALITY_ISSUES_KEY)
        return check_result(check_verdict(issues, summary, check, settings), resource="quality_rules")

    return _check


@asset_check(
    asset=quality_report,
    blocking=False,
    description="Flags annotators who edited over 40% of the pre-masks they started from (`premask_iou < 0.9`).",
)
def qc_refinement_rate(
    context: AssetCheckExecutionContext, dataset_store: DatasetStoreResource
) -> AssetCheckResult:
    refinement = dataset_store.get_store().read_parquet(layout.REFINEMENT_KEY)
    return check_result(refinement_verdict(refinement), warn=True)


QUALITY_REPORT_CHECKS = [_report_check(check) for check in BLOCKING_CHECKS] + [qc_refinement_rate]

"""agreement_report: inter-annotator agreement on gold images, and the check that gates the dataset."""

from typing import Any

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
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
from dataset_pipeline.agreement_report import (
    annotators_verdict,
    disagreements_png,
    per_class_chart_png,
    thresholds_verdict,
    update_agreement,
)
from resources import AgreementRules, DatasetStoreResource, TaxonomyResource


@asset(
    op_tags=CPU_TAGS,
    deps=["annotation_corpus", "annotation_guideline"],
    group_name="quality",
    kinds={"parquet"},
    automation_condition=AutomationCondition.eager(),
    description="Mean pairwise IoU, Boundary IoU and IoU against the majority consensus per class on gold images; "
    "per class and guideline revision; per-annotator velocity, refinement, acceptance, flags and drift; "
    "per-batch trends with calibration rounds apart.",
)
@retried_on_store_outage
def agreement_report(
    context: AssetExecutionContext,
    dataset_store: DatasetStoreResource,
    taxonomy: TaxonomyResource,
    agreement_rules: AgreementRules,
) -> MaterializeResult:
    store = dataset_store.get_store()
    streamed = update_agreement(store, taxonomy.load(), agreement_rules.settings())
    report = streamed.report
    per_class = report.per_class
    metadata: dict[str, Any] = {
        "gold_images": len(report.per_image),
        # A batch's evidence is made once; a rebuild makes only new or changed batches again.
        "batches made again": f"{len(streamed.made)} of {len(streamed.batches)}",
        "classes_failing": int(len(report.failing_classes())),
        "annotators_flagged": int(report.per_annotator.get("flagged", pd.Series(dtype=bool)).sum()),
        "per class": table_metadata(per_class.drop(columns=["class_id", "min_instances"])),
        "per annotator": table_metadata(report.per_annotator),
        "per batch": table_metadata(report.per_batch),
        # Did a guideline revision help? Pairs who both labelled under it, per class.
        "per guideline revision": table_metadata(report.per_revision),
        "gold agreement per batch (calibration rounds marked)": table_metadata(report.per_batch_gold),
        "annotator drift": table_metadata(report.drift),
        "per annotator pair (does the gold assignment rotate?)": table_metadata(report.per_pair),
        # Agreement is measured on gold images, which are labelled by hand; these say how much of
        # the rest came from propagation (accepted or corrected), apart.
        "mask origins": table_metadata(streamed.origins),
    }
    for row in report.per_batch_gold.itertuples():
        metadata[f"gold_iou_by_batch/{row.batch}"] = float(row.mean_pairwise_iou)
    for _, row in per_class.iterrows():
        metadata[f"iou/{row['class']}"] = (
            float(row.mean_pairwise_iou) if pd.notna(row.mean_pairwise_iou) else 0.0
        )
    metadata |= picture_metadata(
        store, layout.PER_CLASS_IOU_PREVIEW, per_class_chart_png(per_class), "per-class IoU"
    )
    sheet = disagreements_png(store, streamed.worst)
    if sheet is not None:
        metadata |= picture_metadata(store, layout.DISAGREEMENTS_PREVIEW, sheet, "largest disagreements")
    metadata["tables"] = MetadataValue.json(
        {name: store.url(key) for name, key in layout.AGREEMENT_TABLES.items()}
    )
    return MaterializeResult(metadata=metadata)


@asset_check(
    asset=agreement_report,
    blocking=True,
    description="Every class with enough gold instances meets its agreement threshold (mean pairwise IoU).",
)
def agreement_meets_thresholds(
    context: AssetCheckExecutionContext,
    dataset_store: DatasetStoreResource,
    agreement_rules: AgreementRules,
    taxonomy: TaxonomyResource,
) -> AssetCheckResult:
    per_class = dataset_store.get_store().read_parquet(layout.AGREEMENT_TABLES["per_class"])
    settings = {
        "threshold_overrides": dict(agreement_rules.threshold_overrides),
        "min_instances": agreement_rules.min_instances,
        "taxonomy.path": taxonomy.load().source,  # each class's agreement_threshold
    }
    return check_result(thresholds_verdict(per_class, settings), resource="agreement_rules")


@asset_check(
    asset=agreement_report,
    blocking=False,
    description="Flags annotators whose velocity is over 2x / under 0.5x the team median, who submit over 40% of "
    "pre-masks unchanged, or whose first-pass acceptance is under 80%.",
)
def annotators_within_norms(
    context: AssetCheckExecutionContext, dataset_store: DatasetStoreResource
) -> AssetCheckResult:
    per_annotator = dataset_store.get_store().read_parquet(layout.AGREEMENT_TABLES["per_annotator"])
    return check_result(annotators_verdict(per_annotator), warn=True)


AGREEMENT_REPORT_CHECKS = [agreement_meets_thresholds, annotators_within_norms]

"""zero_shot_comparison: what the labels are worth over prompt-free SAM 2 (or the classical backend)."""

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

from assets.execution import GPU_TAGS, retried_on_store_outage
from assets.reporting import check_result, table_metadata
from dataset_pipeline.baseline_model import load_metrics
from dataset_pipeline.zero_shot_comparison import (
    evaluate_zero_shot,
    load_summary,
    value_verdict,
    write_summary,
)
from resources import ComparisonRules, DatasetStoreResource, Sam2Resource, TaxonomyResource


@asset(
    deps=["baseline_model", "dataset_splits"],
    group_name="training",
    kinds={"pytorch"},
    pool="gpu",
    op_tags=GPU_TAGS,
    automation_condition=AutomationCondition.eager(),
    description="Prompt-free SAM 2 (classical Felzenszwalb without a checkpoint) on the test split with oracle "
    "class labels, its mIoU, and the annotation value = baseline mIoU - zero-shot mIoU.",
)
@retried_on_store_outage
def zero_shot_comparison(
    context: AssetExecutionContext,
    dataset_store: DatasetStoreResource,
    taxonomy: TaxonomyResource,
    sam2: Sam2Resource,
) -> MaterializeResult:
    store = dataset_store.get_store()
    summary = evaluate_zero_shot(store, taxonomy.load(), sam2.get_backend(), load_metrics(store))
    write_summary(store, summary)
    per_class = summary["per_class_iou"]
    return MaterializeResult(
        metadata={
            "zero_shot_miou": summary["zero_shot_miou"],
            "baseline_miou": summary["baseline_miou"],
            "annotation_value_points": summary["annotation_value_points"],
            "backend": summary["backend"],
            "model_version": summary["model_version"],
            "labelling": MetadataValue.md(
                "**Oracle labelling**: each zero-shot mask takes the class of the majority of its "
                "ground-truth pixels. This favours zero-shot; the value of the labels is a lower bound."
            ),
            "per class IoU": table_metadata(
                pd.DataFrame({"class": list(per_class), "iou": list(per_class.values())})
            ),
        }
    )


@asset_check(
    asset=zero_shot_comparison,
    blocking=False,
    description="Flags labels worth less than the bar over zero-shot (15 points).",
)
def annotation_value_clears_bar(
    context: AssetCheckExecutionContext,
    dataset_store: DatasetStoreResource,
    comparison_rules: ComparisonRules,
) -> AssetCheckResult:
    summary = load_summary(dataset_store.get_store())
    return check_result(value_verdict(summary, comparison_rules.min_annotation_value_points), warn=True)


ZERO_SHOT_COMPARISON_CHECKS = [annotation_value_clears_bar]

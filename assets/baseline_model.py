"""baseline_model: proof that the dataset trains a model; per-class IoU, mIoU, confusion, latency."""

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
from assets.reporting import check_result, picture_metadata, table_metadata
from dataset_pipeline import layout
from dataset_pipeline.baseline_model import (
    confusion_png,
    load_metrics,
    miou_verdict,
    save_baseline,
    train_baseline,
)
from resources import BaselineSettings, DatasetStoreResource, TaxonomyResource


@asset(
    deps=["dataset_splits"],
    group_name="training",
    kinds={"pytorch"},
    pool="gpu",
    op_tags=GPU_TAGS,
    automation_condition=AutomationCondition.eager(),
    description="segmentation-models-pytorch DeepLabV3+ / MobileNetV2 trained on train, selected on val, "
    "measured on test: per-class IoU, mIoU, pixel accuracy, confusion matrix, latency.",
)
@retried_on_store_outage
def baseline_model(
    context: AssetExecutionContext,
    dataset_store: DatasetStoreResource,
    taxonomy: TaxonomyResource,
    baseline: BaselineSettings,
) -> MaterializeResult:
    store = dataset_store.get_store()
    classes = taxonomy.load()
    run = train_baseline(store, classes, baseline.train_config())
    digest = save_baseline(store, run)
    metrics = run.metrics
    metadata = {
        "miou": metrics["miou"],
        "pixel_accuracy": metrics["pixel_accuracy"],
        "latency_ms_per_image": metrics["latency_ms_per_image"],
        "train_seconds": metrics["train_seconds"],
        "device": run.result.device,
        "train_images": run.samples["train"],
        "test_images": run.samples["test"],
        "per class IoU": table_metadata(run.per_class),
        "training": table_metadata(pd.DataFrame(run.result.history).round(4)),
        "checkpoint": MetadataValue.path(store.url(layout.baseline_checkpoint_key(digest))),
    }
    metadata |= picture_metadata(
        store, layout.confusion_preview(digest), confusion_png(run, classes), "confusion matrix"
    )
    return MaterializeResult(metadata=metadata)


@asset_check(
    asset=baseline_model,
    blocking=False,
    description="The baseline reaches the configured mIoU (default 0.70).",
)
def baseline_miou_acceptable(
    context: AssetCheckExecutionContext, dataset_store: DatasetStoreResource, baseline: BaselineSettings
) -> AssetCheckResult:
    return check_result(miou_verdict(load_metrics(dataset_store.get_store()), baseline.min_miou), warn=True)


BASELINE_MODEL_CHECKS = [baseline_miou_acceptable]

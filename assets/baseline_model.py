"""baseline_model: proof that the dataset trains a model; per-class IoU, mIoU, confusion, latency."""

import hashlib
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

from assets.agreement_report import AGREEMENT_TABLES
from assets.dataset_splits import SPLITS_KEY, dataset_splits
from assets.raw_captures import STORE_RETRY
from assets.reporting import picture_metadata, table_metadata
from assets.tags import GPU_TAGS
from dataset_pipeline.annotation_corpus import CORPUS_ANNOTATIONS_KEY, CORPUS_IMAGES_KEY
from dataset_pipeline.baseline_model import (
    build_model,
    evaluate,
    load_samples,
    reference_annotations,
    state_dict_bytes,
    train,
    worst_classes,
)
from dataset_pipeline.figures import confusion_image, png_bytes
from dataset_pipeline.store import DatasetStore, join_key
from resources import BaselineSettings, DatasetStoreResource, TaxonomyResource

BASELINE_METRICS_KEY = join_key("models", "baseline", "latest.json")


def reference_labels(store: DatasetStore) -> pd.DataFrame:
    """The corpus's ground truth: one annotator's instances per image, ranked with the agreement
    report's consensus IoU. Every stage that scores or ships labels (baseline, zero-shot, release)
    takes them from here, so they all measure against the same truth."""
    quality = store.read_parquet(AGREEMENT_TABLES["per_annotator"])
    return reference_annotations(
        store.read_parquet(CORPUS_ANNOTATIONS_KEY),
        dict(zip(quality.annotator_id, quality.iou_vs_consensus.fillna(0), strict=True)),
    )


@asset(
    retry_policy=STORE_RETRY,
    deps=[dataset_splits],
    group_name="training",
    kinds={"pytorch"},
    pool="gpu",
    op_tags=GPU_TAGS,
    automation_condition=AutomationCondition.eager(),
    description="segmentation-models-pytorch DeepLabV3+ / MobileNetV2 trained on train, selected on val, "
    "measured on test: per-class IoU, mIoU, pixel accuracy, confusion matrix, latency.",
)
def baseline_model(
    context: AssetExecutionContext,
    dataset_store: DatasetStoreResource,
    taxonomy: TaxonomyResource,
    baseline: BaselineSettings,
) -> MaterializeResult:
    store = dataset_store.get_store()
    classes = taxonomy.load()
    config = baseline.train_config()
    images = store.read_parquet(CORPUS_IMAGES_KEY)
    splits = store.read_parquet(SPLITS_KEY)
    annotations = reference_labels(store)
    samples = {
        split: load_samples(
            store,
            images[images.image_id.isin(splits[splits.split == split].image_id)],
            annotations,
            config.image_size,
        )
        for split in ("train", "val", "test")
    }
    num_classes = len(classes.classes)
    model = build_model(config, num_classes)
    result = train(model, samples["train"], samples["val"], config, num_classes)
    evaluation = evaluate(model, samples["test"], num_classes, result.device, config.bf16)
    names = classes.names
    per_class = pd.DataFrame(
        {"class": names, "iou": [round(float(v), 4) if v == v else None for v in evaluation.per_class_iou]}
    )
    metrics = {
        "miou": round(evaluation.miou, 4),
        "pixel_accuracy": round(evaluation.pixel_accuracy, 4),
        "latency_ms_per_image": round(evaluation.latency_ms, 2),
        "per_class_iou": dict(zip(per_class["class"], per_class.iou, strict=True)),
        "worst_classes": worst_classes(evaluation, names),
        "best_epoch": result.best_epoch,
        "history": result.history,
        "train_seconds": round(result.seconds, 1),
        "device": result.device,
        "images": {s: len(v.image_ids) for s, v in samples.items()},
        "config": {k: getattr(config, k) for k in config.__dataclass_fields__},
        "taxonomy": classes.tag,
    }
    checkpoint = state_dict_bytes(result.state_dict)
    run = hashlib.sha256(checkpoint).hexdigest()[:12]
    model_key = join_key("models", "baseline", run, "model.pt")
    store.write_bytes(model_key, checkpoint)
    store.write_bytes(
        join_key("models", "baseline", run, "metrics.json"), json.dumps(metrics, indent=2).encode()
    )
    store.write_bytes(
        BASELINE_METRICS_KEY, json.dumps(metrics | {"checkpoint": model_key}, indent=2).encode()
    )
    metadata = {
        "miou": metrics["miou"],
        "pixel_accuracy": metrics["pixel_accuracy"],
        "latency_ms_per_image": metrics["latency_ms_per_image"],
        "train_seconds": metrics["train_seconds"],
        "device": result.device,
        "train_images": len(samples["train"].image_ids),
        "test_images": len(samples["test"].image_ids),
        "per class IoU": table_metadata(per_class),
        "training": table_metadata(pd.DataFrame(result.history).round(4)),
        "checkpoint": MetadataValue.path(store.url(model_key)),
    }
    metadata |= picture_metadata(
        store,
        join_key("previews", "baseline_model", run, "confusion.png"),
        png_bytes(confusion_image(evaluation.confusion, names)),
        "confusion matrix",
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
    metrics = json.loads(dataset_store.get_store().read_bytes(BASELINE_METRICS_KEY))
    passed = metrics["miou"] >= baseline.min_miou
    description = f"test mIoU {metrics['miou']:.3f} (bar {baseline.min_miou:.2f})"
    if not passed:
        description += (
            "; worst classes: "
            + "; ".join(metrics["worst_classes"])
            + " - often a sign of inconsistent boundary annotation"
        )
    return AssetCheckResult(
        passed=passed,
        severity=AssetCheckSeverity.WARN,
        description=description,
        metadata={"miou": metrics["miou"]},
    )


BASELINE_CHECKS = [baseline_miou_acceptable]

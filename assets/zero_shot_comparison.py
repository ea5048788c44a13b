"""zero_shot_comparison and active_learning_queue: what the labels are worth, and what to label next."""

import io
import json

import numpy as np
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

from assets.baseline_model import BASELINE_METRICS_KEY, baseline_model, reference_labels
from assets.dataset_splits import SPLITS_KEY, dataset_splits
from assets.raw_captures import STORE_RETRY
from assets.reporting import picture_metadata, table_metadata
from assets.tags import GPU_TAGS
from dataset_pipeline.active_learning_queue import mc_dropout, rank
from dataset_pipeline.annotation_corpus import CORPUS_ANNOTATIONS_KEY, CORPUS_IMAGES_KEY, semantic_class_map
from dataset_pipeline.baseline_model import (
    TrainConfig,
    build_model,
    load_samples,
    predict,
)
from dataset_pipeline.figures import contact_sheet, png_bytes
from dataset_pipeline.metrics import confusion_matrix, mean_iou, per_class_iou
from dataset_pipeline.sam2_premasks import iter_images
from dataset_pipeline.store import join_key
from dataset_pipeline.zero_shot_comparison import oracle_label_map
from resources import ComparisonRules, DatasetStoreResource, Sam2Resource, TaxonomyResource

ZERO_SHOT_KEY = join_key("tables", "zero_shot", "summary.json")
QUEUE_KEY = join_key("tables", "active_learning", "queue.parquet")


@asset(
    retry_policy=STORE_RETRY,
    deps=[baseline_model, dataset_splits],
    group_name="training",
    kinds={"pytorch"},
    pool="gpu",
    op_tags=GPU_TAGS,
    automation_condition=AutomationCondition.eager(),
    description="Prompt-free SAM 2 (classical Felzenszwalb without a checkpoint) on the test split with oracle "
    "class labels, its mIoU, and the annotation value = baseline mIoU - zero-shot mIoU.",
)
def zero_shot_comparison(
    context: AssetExecutionContext,
    dataset_store: DatasetStoreResource,
    taxonomy: TaxonomyResource,
    sam2: Sam2Resource,
) -> MaterializeResult:
    import cv2

    store = dataset_store.get_store()
    classes = taxonomy.load()
    baseline = json.loads(store.read_bytes(BASELINE_METRICS_KEY))
    size = int(baseline["config"]["image_size"])
    images = store.read_parquet(CORPUS_IMAGES_KEY)
    splits = store.read_parquet(SPLITS_KEY)
    test = images[images.image_id.isin(splits[splits.split == "test"].image_id)]
    annotations = reference_labels(store)
    by_image = dict(tuple(annotations.groupby("image_id", sort=False)))
    backend = sam2.get_backend()
    num_classes = len(classes.classes)
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    masks_made = 0
    for (image_id, rgb), row in zip(iter_images(store, test), test.itertuples(), strict=True):
        truth = (
            semantic_class_map(by_image[image_id], row.height, row.width)
            if image_id in by_image
            else np.zeros((row.height, row.width), np.uint8)
        )
        masks = [m.mask for m in backend.generate(rgb)]
        masks_made += len(masks)
        predicted = oracle_label_map(masks, truth)
        small_pred = cv2.resize(predicted, (size, size), interpolation=cv2.INTER_NEAREST)
        small_truth = cv2.resize(truth, (size, size), interpolation=cv2.INTER_NEAREST)
        cm += confusion_matrix(small_pred, small_truth, num_classes)
    zero_shot = mean_iou(cm)
    value = (baseline["miou"] - zero_shot) * 100
    summary = {
        "backend": backend.name,
        "model_version": backend.model_version,
        "zero_shot_miou": round(zero_shot, 4),
        "baseline_miou": baseline["miou"],
        "annotation_value_points": round(value, 2),
        "test_images": len(test),
        "masks": masks_made,
        "per_class_iou": {
            c.name: (round(float(v), 4) if v == v else None)
            for c, v in zip(classes.classes, per_class_iou(cm), strict=True)
        },
        "labelling": "oracle: each mask takes the majority ground-truth class of its pixels (favours zero-shot)",
    }
    store.write_bytes(ZERO_SHOT_KEY, json.dumps(summary, indent=2).encode())
    return MaterializeResult(
        metadata={
            "zero_shot_miou": summary["zero_shot_miou"],
            "baseline_miou": summary["baseline_miou"],
            "annotation_value_points": summary["annotation_value_points"],
            "backend": backend.name,
            "model_version": backend.model_version,
            "labelling": MetadataValue.md(
                "**Oracle labelling**: each zero-shot mask takes the class of the majority of its "
                "ground-truth pixels. This favours zero-shot; the value of the labels is a lower bound."
            ),
            "per class IoU": table_metadata(
                pd.DataFrame(
                    {"class": list(summary["per_class_iou"]), "iou": list(summary["per_class_iou"].values())}
                )
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
    summary = json.loads(dataset_store.get_store().read_bytes(ZERO_SHOT_KEY))
    value, bar = summary["annotation_value_points"], comparison_rules.min_annotation_value_points
    return AssetCheckResult(
        passed=value >= bar,
        severity=AssetCheckSeverity.WARN,
        description=f"baseline {summary['baseline_miou']:.3f} - zero-shot ({summary['backend']}) {summary['zero_shot_miou']:.3f} = {value:.1f} points (bar {bar:.0f})",
    )


@asset(
    retry_policy=STORE_RETRY,
    deps=[baseline_model],
    group_name="training",
    kinds={"parquet"},
    pool="gpu",
    op_tags=GPU_TAGS,
    automation_condition=AutomationCondition.eager(),
    description="Unreviewed images ranked by the baseline's mean per-pixel entropy (plus MC-dropout disagreement "
    "when configured): next batch to label first.",
)
def active_learning_queue(
    context: AssetExecutionContext,
    dataset_store: DatasetStoreResource,
    taxonomy: TaxonomyResource,
    comparison_rules: ComparisonRules,
) -> MaterializeResult:
    import torch

    store = dataset_store.get_store()
    baseline = json.loads(store.read_bytes(BASELINE_METRICS_KEY))
    config = TrainConfig(
        **{k: v for k, v in baseline["config"].items() if k in TrainConfig.__dataclass_fields__}
    )
    captured = [store.read_parquet(k) for k in store.list("tables/captures") if k.endswith(".parquet")]
    images = pd.concat(captured, ignore_index=True) if captured else pd.DataFrame(columns=["image_id"])
    if comparison_rules.pool == "unreviewed":
        reviewed = set(store.read_parquet(CORPUS_ANNOTATIONS_KEY).image_id)
        images = images[~images.image_id.isin(reviewed)]
    model = build_model(config, len(taxonomy.load().classes))
    model.load_state_dict(
        torch.load(
            io.BytesIO(store.read_bytes(baseline["checkpoint"])), map_location="cpu", weights_only=True
        )
    )
    device = baseline["device"] if baseline["device"] == "cpu" or torch.cuda.is_available() else "cpu"
    model = model.to(device)
    samples = load_samples(store, images, None, config.image_size)
    if len(images) == 0:
        queue = rank([], np.zeros((0,)))
    elif comparison_rules.mc_dropout_passes > 1:
        entropy, information = mc_dropout(model, samples, device, comparison_rules.mc_dropout_passes)
        queue = rank(samples.image_ids, entropy, information)
    else:
        _, entropy, _ = predict(model, samples, device, config.bf16)
        queue = rank(samples.image_ids, entropy)
    queue = (
        queue.merge(images[["image_id", "batch", "uri"]], on="image_id", how="left") if len(queue) else queue
    )
    store.write_parquet(QUEUE_KEY, queue)
    metadata = {
        "pool_images": len(images),
        "pool": comparison_rules.pool,
        "mc_dropout_passes": comparison_rules.mc_dropout_passes,
        "queue": MetadataValue.path(store.url(QUEUE_KEY)),
        "top of the queue": table_metadata(queue.drop(columns=["uri"], errors="ignore").head(20).round(4)),
    }
    top = queue.head(12)
    if len(top):
        tiles = [rgb for _, rgb in iter_images(store, top)]
        sheet = png_bytes(
            contact_sheet(tiles, [f"#{r.rank} {r.score:.3f}" for r in top.itertuples()], columns=6, cell=160)
        )
        metadata |= picture_metadata(
            store, join_key("previews", "active_learning_queue", "top12.png"), sheet, "top 12"
        )
    return MaterializeResult(metadata=metadata)


ZERO_SHOT_CHECKS = [annotation_value_clears_bar]

"""sam2_premasks: pre-masks for every image of a batch, on the GPU pool, gated by checks."""

from typing import Any

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetExecutionContext,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from assets.execution import GPU_TAGS, retried_on_store_outage
from assets.partitions import batch_check, capture_batches
from assets.reporting import check_result, picture_metadata, table_metadata
from dataset_pipeline import layout
from dataset_pipeline.annotation_tasks import no_premask_reason
from dataset_pipeline.sam2_premasks import PromptError, class_counts, premask_batch, read_prompts
from dataset_pipeline.sam2_premasks.batch import overlays_png
from dataset_pipeline.sam2_premasks.checks import (
    REJECTED_SHARE_FLAG,
    class_ids_verdict,
    not_empty_verdict,
    prompted_kept_verdict,
    rejected_share_verdict,
)
from resources import DatasetStoreResource, Sam2Resource, TaxonomyResource


@asset(
    partitions_def=capture_batches,
    deps=["raw_captures"],
    group_name="premasking",
    kinds={"pytorch", "parquet"},
    pool="gpu",
    op_tags=GPU_TAGS,
    description="SAM 2 (or, without a checkpoint, classical GrabCut) masks for every captured image: "
    "prompted by the upload's prompts.csv boxes/points, else by the configured OWLv2 detector's boxes for "
    "the taxonomy's prompts, automatic (unclassed) otherwise.",
)
@retried_on_store_outage
def sam2_premasks(
    context: AssetExecutionContext,
    dataset_store: DatasetStoreResource,
    sam2: Sam2Resource,
    taxonomy: TaxonomyResource,
) -> MaterializeResult:
    store = dataset_store.get_store()
    batch = context.partition_key
    classes = taxonomy.load()
    backend = sam2.get_backend()
    detector = sam2.get_detector()
    context.log.info(f"pre-mask backend: {sam2.backend_note()} on {backend.device}")
    context.log.info(f"detector: {sam2.detector_note()}")
    try:
        run = premask_batch(
            store,
            batch,
            backend,
            taxonomy=classes,
            score_threshold=sam2.score_threshold,
            image_batch_size=sam2.image_batch_size,
            detector=detector,
        )
    except PromptError as exc:
        raise Failure(description=str(exc), allow_retries=False) from None
    store.write_parquet(layout.premasks_key(batch), run.table)
    table = run.table
    metadata: dict[str, Any] = {
        "backend": backend.name,
        "backend_note": sam2.backend_note(),
        "model_version": backend.model_version,
        "device": backend.device,
        "images": run.images,
        "prompted_images": run.prompted_images,
        "masks": run.masks,
        "masks_kept": int((~table.rejected).sum()),
        "share_kept": round(run.kept_share, 4),
        "share_under_threshold": round(1 - run.kept_share, 4) if run.masks else 0.0,
        "score_threshold": sam2.score_threshold,
        "failed_prompts": run.failed_prompts,
        "seconds": round(run.seconds, 2),
        "images_per_second": round(run.images / run.seconds, 2) if run.seconds else 0.0,
        "masks_per_second": round(run.masks / run.seconds, 2) if run.seconds else 0.0,
        "premasks_table": MetadataValue.path(store.url(layout.premasks_key(batch))),
        "masks_for_annotators": int((~table.rejected & table.class_id.notna()).sum()),
        "detector": detector.name if detector is not None else "none",
        "detector_version": run.detector or "none",
        "detector_note": sam2.detector_note(),
        "detector_images": run.detected_images,
        "detector_boxes": len(run.detections),
        "detector_seconds": round(run.detector_seconds, 2),
        "prompt sources": table_metadata(
            table.groupby("prompt_source").size().rename("masks").reset_index()
            if len(table)
            else pd.DataFrame({"prompt_source": [], "masks": []})
        ),
        "per class": table_metadata(class_counts(table, classes)),
    }
    reason = no_premask_reason(table)
    if reason is not None:
        context.log.warning(f"batch {batch}: no pre-mask can go to annotators: {reason}")
        metadata["for annotators"] = MetadataValue.md(
            f"**No pre-mask can be sent to annotators**: {reason}. The annotation tasks will carry no "
            "prediction; annotators start from empty images."
        )
    metadata |= picture_metadata(
        store,
        layout.premask_overlays_preview(batch),
        overlays_png(run, classes, sam2.score_threshold),
        "overlays",
    )
    return MaterializeResult(metadata=metadata)


def _premasks(context: AssetCheckExecutionContext, dataset_store: DatasetStoreResource) -> pd.DataFrame:
    return dataset_store.get_store().read_parquet(layout.premasks_key(context.partition_key))


@batch_check(asset=sam2_premasks, blocking=True, description="No pre-mask is empty.")
def premasks_not_empty(
    context: AssetCheckExecutionContext, dataset_store: DatasetStoreResource
) -> AssetCheckResult:
    return check_result(not_empty_verdict(_premasks(context, dataset_store)))


@batch_check(
    asset=sam2_premasks,
    blocking=True,
    description="Every class id is a foreground class of the taxonomy (or empty, for automatic masks).",
)
def premask_class_ids_valid(
    context: AssetCheckExecutionContext, dataset_store: DatasetStoreResource, taxonomy: TaxonomyResource
) -> AssetCheckResult:
    return check_result(
        class_ids_verdict(_premasks(context, dataset_store), taxonomy.load()), resource="taxonomy"
    )


@batch_check(
    asset=sam2_premasks,
    blocking=True,
    description="Every image that had prompts has at least one kept (not rejected) pre-mask.",
)
def prompted_images_have_kept_premask(
    context: AssetCheckExecutionContext,
    dataset_store: DatasetStoreResource,
    taxonomy: TaxonomyResource,
    sam2: Sam2Resource,
) -> AssetCheckResult:
    store = dataset_store.get_store()
    batch = context.partition_key
    captures = store.read_parquet(layout.captures_key(batch))
    prompts = read_prompts(store, batch, captures, taxonomy.load()) or {}
    verdict = prompted_kept_verdict(_premasks(context, dataset_store), prompts, sam2.score_threshold)
    return check_result(verdict, resource="sam2")


@batch_check(
    asset=sam2_premasks,
    blocking=False,
    description=f"Flags a batch where over {REJECTED_SHARE_FLAG:.0%} of pre-masks score under the threshold "
    "(prompts or classes need revision).",
)
def rejected_share_acceptable(
    context: AssetCheckExecutionContext, dataset_store: DatasetStoreResource
) -> AssetCheckResult:
    return check_result(rejected_share_verdict(_premasks(context, dataset_store)), warn=True)


SAM2_PREMASKS_CHECKS = [
    premasks_not_empty,
    premask_class_ids_valid,
    prompted_images_have_kept_premask,
    rejected_share_acceptable,
]

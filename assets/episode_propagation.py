"""episode_propagation: reviewed keyframe masks carried to the frames between, on the GPU pool,
sent back to people as predictions, gated by temporal consistency."""

from typing import Any

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetExecutionContext,
    AutomationCondition,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from assets.annotation_tasks import push_to_project
from assets.execution import GPU_TAGS, retried_on_store_outage
from assets.partitions import batch_check, capture_batches
from assets.reporting import check_result, picture_metadata, table_metadata
from dataset_pipeline import layout
from dataset_pipeline.annotation_tasks import write_propagated_tasks
from dataset_pipeline.episode_propagation import PropagationError
from dataset_pipeline.episode_propagation.batch import propagate_batch, worst_transitions_png
from dataset_pipeline.episode_propagation.checks import consistency_verdict, flicker_verdict
from resources import (
    AnnotationToolsResource,
    DatasetStoreResource,
    LabelStudioResource,
    PropagationSettings,
    Sam2Resource,
    TaxonomyResource,
)


@asset(
    partitions_def=capture_batches,
    deps=["reviewed_annotations"],
    group_name="annotation",
    # After every import of the batch's reviews (the automation-condition sensor): the keyframes'
    # reviews make it propagate, the corrections' re-import re-propagates to the same masks and ids.
    automation_condition=AutomationCondition.eager(),
    kinds={"pytorch", "opencv", "parquet"},
    pool="gpu",
    op_tags=GPU_TAGS,
    description="Reviewed keyframe masks propagated through each episode (sam2's video predictor with a "
    "checkpoint, DIS optical flow without), written as predictions for people to correct; temporal "
    "consistency (flow-warped IoU of consecutive class maps, flicker) per episode and class.",
)
@retried_on_store_outage
def episode_propagation(
    context: AssetExecutionContext,
    dataset_store: DatasetStoreResource,
    taxonomy: TaxonomyResource,
    sam2: Sam2Resource,
    propagation: PropagationSettings,
    annotation_tools: AnnotationToolsResource,
    label_studio: LabelStudioResource,
) -> MaterializeResult:
    store = dataset_store.get_store()
    batch = context.partition_key
    classes = taxonomy.load()
    if not store.exists(layout.keyframes_key(batch)):
        raise Failure(
            description=f"{store.url(layout.keyframes_key(batch))} is missing: materialize annotation_tasks first",
            allow_retries=False,
        )
    try:
        propagator = propagation.get_propagator(sam2)
        result = propagate_batch(
            store,
            batch,
            classes,
            propagator,
            propagation.consistency_thresholds,
            min_area=propagation.min_area_px,
        )
    except (PropagationError, ValueError, FileNotFoundError) as exc:
        raise Failure(description=str(exc), allow_retries=False) from None
    store.write_parquet(layout.propagated_key(batch), result.table)
    store.write_parquet(layout.temporal_consistency_key(batch), result.consistency)
    metadata: dict[str, Any] = {
        "backend": result.backend,
        "model_version": result.model_version,
        "episodes_propagated": len(result.episodes),
        "episodes_waiting_for_keyframes": len(result.waiting),
        "keyframes": sum(e.keyframes for e in result.episodes),
        "frames_propagated": result.propagated_frames,
        "masks_propagated": len(result.table),
        "seconds": round(result.seconds, 2),
        "frames_per_second": round(result.propagated_frames / result.seconds, 2) if result.seconds else 0.0,
        "propagated_table": MetadataValue.path(store.url(layout.propagated_key(batch))),
        "consistency_table": MetadataValue.path(store.url(layout.temporal_consistency_key(batch))),
    }
    if result.waiting:
        waiting = "; ".join(
            f"{e}: {len(ids)} keyframe(s), first {ids[0]}" for e, ids in result.waiting.items()
        )
        context.log.warning(f"episodes waiting for reviewed keyframes: {waiting}")
        metadata["waiting"] = MetadataValue.md(f"**Waiting for reviewed keyframes**: {waiting}")
    if result.episodes:
        metadata["per episode"] = table_metadata(
            pd.DataFrame(
                [
                    {
                        "episode": e.episode,
                        "frames": e.frames,
                        "keyframes": e.keyframes,
                        "propagated": e.frames - e.keyframes,
                        "masks": len(e.propagated_rows),
                        "flickers": len(e.consistency.flickers),
                        "seconds": round(e.seconds, 2),
                    }
                    for e in result.episodes
                ]
            )
        )
        metadata["temporal consistency"] = table_metadata(
            result.consistency[
                [
                    "episode_id",
                    "class_name",
                    "category",
                    "transitions",
                    "mean_warped_iou",
                    "min_warped_iou",
                    "threshold",
                    "flickers",
                    "passed",
                ]
            ]
        )
        url_for = annotation_tools.image_url(store)
        tasks = write_propagated_tasks(
            store, batch, classes, url_for, result.table, annotation_tools.cvat_image_names
        )
        metadata["correction_tasks"] = tasks.tasks
        if label_studio.enabled:  # the propagated frames join the keyframes' project, as predictions
            metadata |= push_to_project(
                context, store, batch, label_studio, classes, tasks.label_studio_tasks
            )
        metadata |= {
            f"correction {role}": MetadataValue.path(store.url(key)) for role, key in tasks.files.items()
        }
        png = worst_transitions_png(store, batch, result, classes)
        if png is not None:
            metadata |= picture_metadata(
                store, layout.worst_transitions_preview(batch), png, "worst transitions"
            )
    else:
        metadata["note"] = (
            "no episode with frames between reviewed keyframes (episodes labelled whole, or waiting)"
        )
    return MaterializeResult(metadata=metadata)


def _consistency(context: AssetCheckExecutionContext, dataset_store: DatasetStoreResource) -> pd.DataFrame:
    return dataset_store.get_store().read_parquet(layout.temporal_consistency_key(context.partition_key))


@batch_check(
    asset=episode_propagation,
    blocking=True,
    description="Every propagated episode's classes keep their mean flow-warped IoU between consecutive "
    "frames at or above their category's floor (deformable and thin lower).",
)
def propagated_masks_temporally_consistent(
    context: AssetCheckExecutionContext, dataset_store: DatasetStoreResource, propagation: PropagationSettings
) -> AssetCheckResult:
    verdict = consistency_verdict(_consistency(context, dataset_store), propagation.consistency_thresholds)
    return check_result(verdict, resource="propagation")


@batch_check(
    asset=episode_propagation,
    blocking=False,
    description="Flags classes that appear or vanish for one or two frames of an episode.",
)
def propagated_masks_do_not_flicker(
    context: AssetCheckExecutionContext, dataset_store: DatasetStoreResource
) -> AssetCheckResult:
    return check_result(flicker_verdict(_consistency(context, dataset_store)), warn=True)


EPISODE_PROPAGATION_CHECKS = [propagated_masks_temporally_consistent, propagated_masks_do_not_flicker]

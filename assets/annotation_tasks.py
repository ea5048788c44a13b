"""annotation_tasks: pre-annotations for Label Studio and CVAT, per batch."""

from typing import Any

from dagster import AssetExecutionContext, Failure, MaterializeResult, MetadataValue, asset

from assets.execution import CPU_TAGS, retried_on_store_outage
from assets.partitions import capture_batches
from assets.reporting import table_metadata
from dataset_pipeline import layout
from dataset_pipeline.annotation_tasks import (
    first_round,
    push_to_label_studio,
    write_annotation_tasks,
    write_work_plan,
)
from dataset_pipeline.episode_propagation import PropagationError
from dataset_pipeline.episode_propagation.batch import keyframe_table
from dataset_pipeline.formats.label_studio.client import LabelStudioError, project_title
from resources import (
    AgreementRules,
    AnnotationTeam,
    AnnotationToolsResource,
    DatasetStoreResource,
    LabelStudioResource,
    PropagationSettings,
    TaxonomyResource,
)


@asset(
    op_tags=CPU_TAGS,
    partitions_def=capture_batches,
    deps=["sam2_premasks"],
    group_name="annotation",
    kinds={"json", "xml"},
    description="Label Studio tasks with brush-RLE predictions and a labeling config; CVAT for images 1.1 "
    "XML with semi-auto mask shapes and the task's labels. Of long episodes, the keyframes go first "
    "(every N-th frame and where the scene moves fast); the rest follow propagation. With a roster, who labels "
    "what: a share of gold images for the batch's pair (pairs rotate across batches), the rest one person each, "
    "as Label Studio saved filters and a CVAT job list.",
)
@retried_on_store_outage
def annotation_tasks(
    context: AssetExecutionContext,
    dataset_store: DatasetStoreResource,
    taxonomy: TaxonomyResource,
    annotation_tools: AnnotationToolsResource,
    label_studio: LabelStudioResource,
    propagation: PropagationSettings,
    annotation_team: AnnotationTeam,
    agreement_rules: AgreementRules,
) -> MaterializeResult:
    store = dataset_store.get_store()
    batch = context.partition_key
    try:
        url_for = annotation_tools.image_url(store)
    except ValueError as exc:
        raise Failure(description=f"annotation_tools configuration: {exc}", allow_retries=False) from None
    classes = taxonomy.load()
    captures = store.read_parquet(layout.captures_key(batch))
    try:
        keyframes = keyframe_table(store, captures, propagation.keyframes())
    except (PropagationError, ValueError) as exc:
        raise Failure(description=str(exc), allow_retries=False) from None
    store.write_parquet(layout.keyframes_key(batch), keyframes)
    export = write_annotation_tasks(
        store, batch, classes, url_for, annotation_tools.cvat_image_names, keyframes=keyframes
    )
    metadata: dict[str, Any] = {
        "tasks": export.tasks,
        "masks_sent": export.masks_sent,
        "skipped_rejected": export.skipped_rejected,
        "skipped_unclassed": export.skipped_unclassed,
        "masks per class": MetadataValue.json(export.masks_per_class),
        "image_url_mode": annotation_tools.url_mode(store),
        "keyframes": int(keyframes.keyframe.sum()),
        "frames_after_propagation": export.deferred,
        "keyframe reasons": MetadataValue.json(keyframes.reason.value_counts().to_dict()),
        "keyframes_table": MetadataValue.path(store.url(layout.keyframes_key(batch))),
    }
    metadata |= {role: MetadataValue.path(store.url(key)) for role, key in export.files.items()}
    if export.no_premask_reason is not None:
        context.log.warning(f"batch {batch}: no pre-mask sent: {export.no_premask_reason}")
        metadata["pre-annotations"] = MetadataValue.md(
            f"**No pre-mask was sent**: {export.no_premask_reason}. Every task says so "
            "(Label Studio: the task's `pre_annotation` field; CVAT: a comment at the top of the XML)."
        )
    task_ids, project_id = None, None
    if label_studio.enabled:
        metadata |= push_to_project(context, store, batch, label_studio, classes, export.label_studio_tasks)
        pushed = store.read_parquet(layout.label_studio_tasks_key(batch))  # this push's and earlier ones'
        task_ids = dict(zip(pushed.image_id, pushed.task_id, strict=True))
        project_id = int(pushed.project_id.iloc[0])
    team = annotation_team.settings(agreement_rules.calibration_prefix)
    plan = write_work_plan(store, batch, first_round(captures, keyframes), team, task_ids)
    if plan is None:
        metadata["work plan"] = (
            "none: no team roster (annotation_team.annotators, env DATASET_PIPELINE_ANNOTATORS)"
        )
    else:
        metadata |= work_plan_metadata(store, label_studio, plan, project_id)
    return MaterializeResult(metadata=metadata)


def work_plan_metadata(
    store, label_studio: LabelStudioResource, plan, project_id: int | None
) -> dict[str, Any]:
    """Say who labels what; with a live Label Studio, make each annotator's saved filter there."""
    counts = plan.plan.groupby(["annotator_id", "role"]).size().unstack(fill_value=0).reset_index()
    out: dict[str, Any] = {
        "gold pair": ", ".join(plan.pair) or "everyone (calibration round)",
        "images per annotator": table_metadata(counts),
        **{f"team {role}": MetadataValue.path(store.url(key)) for role, key in plan.files.items()},
    }
    if project_id is not None:  # the batch is in a live Label Studio project
        try:
            views = label_studio.client().ensure_views(project_id, plan.views)
        except LabelStudioError as exc:
            raise Failure(description=str(exc), allow_retries=False) from None
        out["label_studio_work_views"] = MetadataValue.json(views)
    return out


def push_to_project(
    context: AssetExecutionContext,
    store,
    batch: str,
    label_studio: LabelStudioResource,
    classes,
    tasks: list[dict],
) -> dict[str, Any]:
    """Import ``tasks`` into the live Label Studio project (once per image) and say so: the first
    round's tasks here, the correction round's from episode_propagation."""
    title = project_title(label_studio.project_prefix, classes)
    try:
        pushed = push_to_label_studio(store, batch, label_studio.client(), title, classes, tasks)
    except LabelStudioError as exc:
        raise Failure(description=str(exc), allow_retries=False) from None
    context.log.info(
        f"Label Studio project {title!r} (id {pushed.project_id}): {pushed.imported} tasks imported, "
        f"{pushed.already_there} already there"
    )
    return {
        "label_studio_project": f"{title} (id {pushed.project_id})",
        "label_studio_tasks_imported": pushed.imported,
        "label_studio_tasks_already_there": pushed.already_there,
        "label_studio_task_ids": MetadataValue.path(store.url(layout.label_studio_tasks_key(batch))),
    }

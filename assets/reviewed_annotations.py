"""reviewed_annotations: a batch's review exports → its annotations table (strict importers)."""

from datetime import UTC, datetime

from dagster import AssetExecutionContext, Failure, MaterializeResult, MetadataValue, asset

from assets.annotation_tasks import annotation_tasks
from assets.partitions import capture_batches
from assets.raw_captures import STORE_RETRY
from assets.reporting import table_metadata
from assets.tags import CPU_TAGS
from dataset_pipeline.importers import AnnotationImportError
from dataset_pipeline.reviewed_annotations import (
    annotations_key,
    import_batch_reviews,
    review_prefix,
    save_label_studio_pull,
)
from resources import AnnotationToolsResource, DatasetStoreResource, LabelStudioResource, TaxonomyResource


@asset(
    op_tags=CPU_TAGS,
    partitions_def=capture_batches,
    deps=[annotation_tasks],
    group_name="annotation",
    kinds={"parquet"},
    retry_policy=STORE_RETRY,
    description="Every CVAT / Label Studio / COCO export in reviews/<batch>/ imported with provenance "
    "(annotator, time, tool, assistance, pre-mask link and IoU, review status). A malformed file "
    "refuses the whole batch and leaves its previous table untouched.",
)
def reviewed_annotations(
    context: AssetExecutionContext,
    dataset_store: DatasetStoreResource,
    taxonomy: TaxonomyResource,
    annotation_tools: AnnotationToolsResource,
    label_studio: LabelStudioResource,
) -> MaterializeResult:
    store = dataset_store.get_store()
    batch = context.partition_key
    classes = taxonomy.load()
    pulled = (
        _pull_from_label_studio(context, store, batch, classes, label_studio)
        if label_studio.enabled
        else None
    )
    try:
        result = import_batch_reviews(
            store, batch, classes, annotation_tools.label_map, annotation_tools.default_annotator
        )
    except (AnnotationImportError, FileNotFoundError) as exc:
        raise Failure(description=str(exc), allow_retries=False) from None
    table = result.annotations
    store.write_parquet(annotations_key(batch), table)
    per_annotator = (
        table.groupby("annotator_id")
        .agg(
            annotations=("annotation_id", "size"),
            images=("image_id", "nunique"),
            hours=("seconds_spent", lambda s: round(s.sum() / 3600, 2)),
            sam2_assisted=("assistance", lambda s: int((s == "sam2-assisted").sum())),
            mean_premask_iou=("premask_iou", lambda s: round(s.mean(), 3)),
        )
        .reset_index()
        if len(table)
        else table
    )
    per_class = (
        table.class_id.map(lambda c: classes.by_id(int(c)).name)
        .value_counts()
        .rename_axis("class")
        .reset_index()
    )
    return MaterializeResult(
        metadata={
            "annotations": len(table),
            "images": int(table.image_id.nunique()),
            "annotators": int(table.annotator_id.nunique()),
            "export_files": len(result.files),
            "skipped_records": len(result.skipped),
            "peer_reviews": result.peer_reviews,
            "exports": MetadataValue.json(result.files),
            "per annotator": table_metadata(per_annotator),
            "per class": table_metadata(per_class),
            "review_folder": MetadataValue.path(store.url(review_prefix(batch))),
            "annotations_table": MetadataValue.path(store.url(annotations_key(batch))),
            **({"label_studio_pull": pulled} if pulled is not None else {}),
        }
    )


def _pull_from_label_studio(context, store, batch, classes, label_studio) -> str:
    """A snapshot export (full predictions) of the project, the batch's annotated tasks kept under
    reviews/<batch>/label_studio_api/ when they changed since the last pull. Nothing stored changes
    when Label Studio cannot be reached or refuses."""
    from dataset_pipeline.label_studio_connector import LabelStudioError, batch_export, project_title

    title = project_title(label_studio.project_prefix, classes)
    try:
        client = label_studio.client()
        project_id = client.ensure_project(title, classes)
        tasks = batch_export(client.snapshot_export(project_id), batch, client.users())
    except LabelStudioError as exc:
        raise Failure(description=str(exc), allow_retries=False) from None
    key = save_label_studio_pull(store, batch, tasks, datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ"))
    context.log.info(
        f"Label Studio {title!r}: {len(tasks)} annotated tasks of {batch}; "
        + (f"saved {key}" if key else "unchanged since the last pull")
    )
    return f"{len(tasks)} annotated tasks from project {project_id}" + ("" if key else " (unchanged)")

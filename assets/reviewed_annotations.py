"""reviewed_annotations: a batch's review exports → its annotations table (strict importers)."""

from dagster import AssetExecutionContext, Failure, MaterializeResult, MetadataValue, asset

from assets.annotation_tasks import annotation_tasks
from assets.partitions import capture_batches
from assets.raw_captures import STORE_RETRY
from assets.reporting import table_metadata
from assets.tags import CPU_TAGS
from dataset_pipeline.importers import AnnotationImportError
from dataset_pipeline.reviewed_annotations import annotations_key, import_batch_reviews, review_prefix
from resources import AnnotationToolsResource, DatasetStoreResource, TaxonomyResource


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
) -> MaterializeResult:
    store = dataset_store.get_store()
    batch = context.partition_key
    classes = taxonomy.load()
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
        }
    )

"""reviewed_annotations: a batch's review exports → its annotations table (strict importers)."""

from datetime import UTC, datetime

from dagster import AssetExecutionContext, Failure, MaterializeResult, MetadataValue, asset

from assets.execution import CPU_TAGS, retried_on_store_outage
from assets.partitions import capture_batches
from assets.reporting import table_metadata
from dataset_pipeline import layout
from dataset_pipeline.formats.importing import AnnotationImportError
from dataset_pipeline.formats.label_studio.client import LabelStudioError, project_title
from dataset_pipeline.reviewed_annotations import (
    import_batch_reviews,
    per_annotator,
    per_class,
    pull_from_label_studio,
)
from resources import AnnotationToolsResource, DatasetStoreResource, LabelStudioResource, TaxonomyResource


@asset(
    op_tags=CPU_TAGS,
    partitions_def=capture_batches,
    deps=["annotation_tasks"],
    group_name="annotation",
    kinds={"parquet"},
    description="Every CVAT / Label Studio / COCO export in `reviews/<batch>/` imported with provenance "
    "(annotator, time, tool, assistance, pre-mask link and IoU, review status). A malformed file "
    "refuses the whole batch and leaves its previous table untouched.",
)
@retried_on_store_outage
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
    pulled = None
    if label_studio.enabled:
        title = project_title(label_studio.project_prefix, classes)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        try:
            project_id, tasks, key = pull_from_label_studio(
                store, batch, label_studio.client(), title, classes, stamp
            )
        except LabelStudioError as exc:
            raise Failure(description=str(exc), allow_retries=False) from None
        context.log.info(
            f"Label Studio {title!r}: {tasks} annotated tasks of {batch}; "
            + (f"saved {key}" if key else "unchanged since the last pull")
        )
        pulled = f"{tasks} annotated tasks from project {project_id}" + ("" if key else " (unchanged)")
    try:
        result = import_batch_reviews(
            store, batch, classes, annotation_tools.label_map, annotation_tools.default_annotator
        )
    except AnnotationImportError as exc:
        raise Failure(description=f"{exc} (in the store {store.root_url})", allow_retries=False) from None
    except FileNotFoundError as exc:
        raise Failure(description=str(exc), allow_retries=False) from None
    table = result.annotations
    store.write_parquet(layout.annotations_key(batch), table)
    return MaterializeResult(
        metadata={
            "annotations": len(table),
            "images": int(table.image_id.nunique()),
            "annotators": int(table.annotator_id.nunique()),
            "export_files": len(result.files),
            "skipped_records": len(result.skipped),
            "peer_reviews": result.peer_reviews,
            "expert_audits": result.expert_audits,
            "review_files_digest": result.digest,
            "exports": MetadataValue.json(result.files),
            "per annotator": table_metadata(per_annotator(table)),
            "per class": table_metadata(per_class(table, classes)),
            "review_folder": MetadataValue.path(store.url(layout.review_prefix(batch))),
            "annotations_table": MetadataValue.path(store.url(layout.annotations_key(batch))),
            **({"label_studio_pull": pulled} if pulled is not None else {}),
        }
    )

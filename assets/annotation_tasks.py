"""annotation_tasks: pre-annotations for Label Studio and CVAT, per batch."""

from dagster import AssetExecutionContext, Failure, MaterializeResult, MetadataValue, asset

from assets.partitions import capture_batches
from assets.raw_captures import STORE_RETRY
from assets.sam2_premasks import sam2_premasks
from assets.tags import CPU_TAGS
from dataset_pipeline.annotation_tasks import image_url_builder, write_annotation_tasks
from resources import AnnotationToolsResource, DatasetStoreResource, TaxonomyResource


@asset(
    op_tags=CPU_TAGS,
    partitions_def=capture_batches,
    deps=[sam2_premasks],
    group_name="annotation",
    kinds={"json", "xml"},
    retry_policy=STORE_RETRY,
    description="Label Studio tasks with brush-RLE predictions and a labeling config; CVAT for images 1.1 "
    "XML with semi-auto mask shapes and the task's labels.",
)
def annotation_tasks(
    context: AssetExecutionContext,
    dataset_store: DatasetStoreResource,
    taxonomy: TaxonomyResource,
    annotation_tools: AnnotationToolsResource,
) -> MaterializeResult:
    store = dataset_store.get_store()
    batch = context.partition_key
    try:
        url_for = image_url_builder(
            store,
            annotation_tools.image_url_mode,
            annotation_tools.local_files_document_root,
            annotation_tools.image_base_url,
        )
    except ValueError as exc:
        raise Failure(description=f"annotation_tools configuration: {exc}", allow_retries=False) from None
    export = write_annotation_tasks(store, batch, taxonomy.load(), url_for, annotation_tools.cvat_image_names)
    metadata = {
        "tasks": export.tasks,
        "masks_sent": export.masks_sent,
        "skipped_rejected": export.skipped_rejected,
        "skipped_unclassed": export.skipped_unclassed,
        "masks per class": MetadataValue.json(export.masks_per_class),
        "image_url_mode": annotation_tools.image_url_mode,
    }
    metadata |= {role: MetadataValue.path(store.url(key)) for role, key in export.files.items()}
    return MaterializeResult(metadata=metadata)

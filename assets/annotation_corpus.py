"""annotation_corpus: every batch's reviewed annotations and captures together; gold images marked."""

from dagster import AssetExecutionContext, AutomationCondition, MaterializeResult, MetadataValue, asset

from assets.execution import CPU_TAGS, retried_on_store_outage
from assets.reporting import table_metadata
from dataset_pipeline import layout
from dataset_pipeline.annotation_corpus import update_corpus
from resources import DatasetStoreResource


@asset(
    op_tags=CPU_TAGS,
    deps=["reviewed_annotations", "annotation_guideline"],
    group_name="quality",
    kinds={"parquet"},
    automation_condition=AutomationCondition.eager(),
    description="Every batch's annotations and captures in one corpus (each batch's rows made once, "
    "streamed batch by batch); images labelled by 2+ annotators are gold; "
    "each annotation tagged with the guideline revision in force at its created_at.",
)
@retried_on_store_outage
def annotation_corpus(
    context: AssetExecutionContext, dataset_store: DatasetStoreResource
) -> MaterializeResult:
    store = dataset_store.get_store()
    corpus = update_corpus(store)
    return MaterializeResult(
        metadata={
            "batches": len(corpus.batches),
            "batches made again": len(corpus.made),
            "images": corpus.images,
            "annotations": corpus.annotations,
            "gold_images": corpus.gold_images,
            "annotators": len(corpus.annotators),
            "per guideline revision": table_metadata(corpus.revisions),
            "corpus_annotations": MetadataValue.path(store.url(layout.CORPUS_ANNOTATIONS_KEY)),
            "corpus_images": MetadataValue.path(store.url(layout.CORPUS_IMAGES_KEY)),
        }
    )

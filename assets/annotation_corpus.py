"""annotation_corpus: every batch's reviewed annotations and captures together; gold images marked."""

from dagster import AssetExecutionContext, AutomationCondition, MaterializeResult, MetadataValue, asset

from assets.execution import CPU_TAGS, retried_on_store_outage
from assets.reporting import table_metadata
from dataset_pipeline import layout
from dataset_pipeline.annotation_corpus import build_corpus, revision_counts, write_corpus
from resources import DatasetStoreResource


@asset(
    op_tags=CPU_TAGS,
    deps=["reviewed_annotations", "annotation_guideline"],
    group_name="quality",
    kinds={"parquet"},
    automation_condition=AutomationCondition.eager(),
    description="Every batch's annotations and captures in one corpus; images labelled by 2+ annotators are gold; "
    "each annotation tagged with the guideline revision in force at its created_at.",
)
@retried_on_store_outage
def annotation_corpus(
    context: AssetExecutionContext, dataset_store: DatasetStoreResource
) -> MaterializeResult:
    store = dataset_store.get_store()
    corpus = build_corpus(store)
    write_corpus(store, corpus)
    table = corpus.annotations
    return MaterializeResult(
        metadata={
            "batches": len(corpus.batches),
            "images": len(corpus.images),
            "annotations": len(table),
            "gold_images": int(table[table.is_gold].image_id.nunique()) if len(table) else 0,
            "annotators": int(table.annotator_id.nunique()) if len(table) else 0,
            "per guideline revision": table_metadata(revision_counts(table)),
            "corpus_annotations": MetadataValue.path(store.url(layout.CORPUS_ANNOTATIONS_KEY)),
            "corpus_images": MetadataValue.path(store.url(layout.CORPUS_IMAGES_KEY)),
        }
    )

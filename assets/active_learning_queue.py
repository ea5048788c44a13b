"""active_learning_queue: the unreviewed images the baseline is least sure of, to label next."""

from typing import Any

from dagster import AssetExecutionContext, AutomationCondition, MaterializeResult, MetadataValue, asset

from assets.execution import GPU_TAGS, retried_on_store_outage
from assets.reporting import picture_metadata, table_metadata
from dataset_pipeline import layout
from dataset_pipeline.active_learning_queue import build_queue, pool_images, top_png
from resources import ComparisonRules, DatasetStoreResource, TaxonomyResource


@asset(
    deps=["baseline_model"],
    group_name="training",
    kinds={"parquet"},
    pool="gpu",
    op_tags=GPU_TAGS,
    automation_condition=AutomationCondition.eager(),
    description="Unreviewed images ranked by the baseline's mean per-pixel entropy (plus MC-dropout disagreement "
    "when configured): next batch to label first.",
)
@retried_on_store_outage
def active_learning_queue(
    context: AssetExecutionContext,
    dataset_store: DatasetStoreResource,
    taxonomy: TaxonomyResource,
    comparison_rules: ComparisonRules,
) -> MaterializeResult:
    store = dataset_store.get_store()
    images = pool_images(store, comparison_rules.pool)
    queue = build_queue(store, taxonomy.load(), images, comparison_rules.mc_dropout_passes)
    store.write_parquet(layout.ACTIVE_LEARNING_QUEUE_KEY, queue)
    metadata: dict[str, Any] = {
        "pool_images": len(images),
        "pool": comparison_rules.pool,
        "mc_dropout_passes": comparison_rules.mc_dropout_passes,
        "queue": MetadataValue.path(store.url(layout.ACTIVE_LEARNING_QUEUE_KEY)),
        "top of the queue": table_metadata(queue.drop(columns=["uri"], errors="ignore").head(20).round(4)),
    }
    sheet = top_png(store, queue)
    if sheet is not None:
        metadata |= picture_metadata(store, layout.ACTIVE_LEARNING_PREVIEW, sheet, "top 12")
    return MaterializeResult(metadata=metadata)

"""qc_assignments: a batch's peer-review and expert-audit samples, tracked until their verdicts return."""

from datetime import UTC, datetime

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

from assets.execution import CPU_TAGS, retried_on_store_outage
from assets.partitions import batch_check, capture_batches
from assets.reporting import check_result, table_metadata
from dataset_pipeline import layout
from dataset_pipeline.formats.label_studio.client import LabelStudioError
from dataset_pipeline.qc_assignments import batch_flags_verdict, read_batch_quality, update_batch_qc
from resources import DatasetStoreResource, LabelStudioResource, QcRules


@asset(
    op_tags=CPU_TAGS,
    partitions_def=capture_batches,
    deps=["reviewed_annotations"],
    group_name="annotation",
    kinds={"parquet", "csv"},
    automation_condition=AutomationCondition.eager(),
    description="Peer review of 12% of the batch's images (stratified by annotator and class) and an expert audit "
    "of 5% of each week's, as sheets, Label Studio saved filters and a CVAT job list; each assignment tracked "
    "until its verdict is imported. Per-batch acceptance, audit pass rate and time per image for the trend plots.",
)
@retried_on_store_outage
def qc_assignments(
    context: AssetExecutionContext,
    dataset_store: DatasetStoreResource,
    qc_rules: QcRules,
    label_studio: LabelStudioResource,
) -> MaterializeResult:
    store = dataset_store.get_store()
    batch = context.partition_key
    result = update_batch_qc(store, batch, qc_rules.settings(), datetime.now(UTC))
    table = result.assignments
    views = {}
    tasks_key = layout.label_studio_tasks_key(batch)
    if label_studio.enabled and store.exists(tasks_key):
        # the batch lives in a live Label Studio: its saved filters are made there too
        project_id = int(store.read_parquet(tasks_key).project_id.iloc[0])
        try:
            views = label_studio.client().ensure_views(project_id, result.views)
        except LabelStudioError as exc:
            raise Failure(description=str(exc), allow_retries=False) from None
        context.log.info(f"Label Studio project {project_id}: saved filters {sorted(views)}")
    counts = (
        table.groupby(["tier", "status"]).size().unstack(fill_value=0).reset_index() if len(table) else table
    )
    figures = {k: v for k, v in result.quality.figures.items() if v == v}  # NaN: no verdicts yet
    return MaterializeResult(
        metadata={
            # Numbers per batch over time: the Dagster UI plots each one per partition.
            **figures,
            "samples": table_metadata(counts),
            "per annotator": table_metadata(result.quality.per_annotator),
            "assignments": table_metadata(table.drop(columns=["assigned_at"]), max_rows=30),
            **{role: MetadataValue.path(store.url(key)) for role, key in result.files.items()},
            **({"label_studio_views": MetadataValue.json(views)} if views else {}),
        }
    )


@batch_check(
    asset=qc_assignments,
    blocking=False,
    description="Flags a batch under 80% first-pass acceptance or over 2x the team's median annotation time "
    "per image (qc_rules.min_acceptance, qc_rules.max_time_ratio).",
)
def batch_within_norms(
    context: AssetCheckExecutionContext, dataset_store: DatasetStoreResource, qc_rules: QcRules
) -> AssetCheckResult:
    batch = context.partition_key
    quality = read_batch_quality(dataset_store.get_store(), batch)
    return check_result(
        batch_flags_verdict(batch, quality, qc_rules.settings()), resource="qc_rules", warn=True
    )


QC_ASSIGNMENTS_CHECKS = [batch_within_norms]

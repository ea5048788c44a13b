"""Dagster software-defined assets, one module per stage; each one calls dataset_pipeline."""

from assets.annotation_tasks import annotation_tasks
from assets.partitions import capture_batches
from assets.raw_captures import captures_table_expectations, quarantine_share_under_limit, raw_captures
from assets.sam2_premasks import GPU_TAGS, PREMASK_CHECKS, sam2_premasks

#: Assets materialized per upload batch, in pipeline order.
PER_BATCH_ASSETS = [raw_captures, sam2_premasks, annotation_tasks]
ALL_ASSETS = [*PER_BATCH_ASSETS]
ALL_CHECKS = [captures_table_expectations, quarantine_share_under_limit, *PREMASK_CHECKS]

__all__ = ["ALL_ASSETS", "ALL_CHECKS", "GPU_TAGS", "PER_BATCH_ASSETS", "capture_batches"]

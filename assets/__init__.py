"""Dagster software-defined assets, one module per stage; each one calls dataset_pipeline."""

from assets.partitions import capture_batches
from assets.raw_captures import captures_table_expectations, quarantine_share_under_limit, raw_captures

#: Assets materialized per upload batch, in pipeline order.
PER_BATCH_ASSETS = [raw_captures]
ALL_ASSETS = [*PER_BATCH_ASSETS]
ALL_CHECKS = [captures_table_expectations, quarantine_share_under_limit]

__all__ = ["ALL_ASSETS", "ALL_CHECKS", "PER_BATCH_ASSETS", "capture_batches"]

"""Partitions shared by the per-batch assets: one upload batch = one partition."""

import warnings

from dagster import DynamicPartitionsDefinition, PreviewWarning

capture_batches = DynamicPartitionsDefinition(name="capture_batches")

# Per-batch checks need partitions_def on asset_check (a preview in Dagster 1.13): without it
# a check cannot know which batch it checks. Dagster is pinned, so the warning is noise in
# every step's log.
warnings.filterwarnings("ignore", category=PreviewWarning, message=".*partitions_def on an AssetCheckSpec.*")

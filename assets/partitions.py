"""Partitions shared by the per-batch assets: one upload batch = one partition."""

from dagster import DynamicPartitionsDefinition

capture_batches = DynamicPartitionsDefinition(name="capture_batches")

"""Partitions shared by the per-batch assets: one upload batch = one partition."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from dagster import AssetChecksDefinition, DynamicPartitionsDefinition, PreviewWarning, asset_check

CAPTURE_BATCHES = "capture_batches"
capture_batches = DynamicPartitionsDefinition(name=CAPTURE_BATCHES)


def batch_check(**kwargs: Any) -> Callable[[Callable[..., Any]], AssetChecksDefinition]:
    """``@asset_check`` for a per-batch asset: the check runs on the batch it is asked for.

    A check needs ``partitions_def`` to know which batch it checks, which Dagster 1.13 still
    calls a preview and warns about where it is declared. Dagster is pinned, so the warning is
    noise in every step's log; it is silenced here, around these declarations only (no process-
    wide filter is installed by importing the assets).
    """

    def decorate(function: Callable[..., Any]) -> AssetChecksDefinition:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", category=PreviewWarning, message=".*partitions_def on an AssetCheckSpec"
            )
            return asset_check(partitions_def=capture_batches, **kwargs)(function)

    return decorate

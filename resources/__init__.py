"""Dagster ConfigurableResources: the thin layer that hands configured domain objects to assets."""

from resources.settings import CaptureRules
from resources.store import DatasetStoreResource

__all__ = ["CaptureRules", "DatasetStoreResource"]

"""dataset_pipeline: the domain library (no Dagster here, but for definitions.py and automation.py)."""

__version__ = "0.1.0"

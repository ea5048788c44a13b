"""dataset_pipeline: the domain library. Only ``dataset_pipeline.orchestration`` knows Dagster.

Importing any of it changes no process state (no environment variable, warnings filter or
global setting): whatever a step needs is set by the function that needs it.
"""

__version__ = "0.1.0"

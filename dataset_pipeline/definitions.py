"""The code location: assets, checks, resources, jobs and sensors wired together.

Loaded by ``dagster dev`` (workspace.yaml), every step process and every CLI call, so it
imports nothing heavy: torch, sam2, smp and great_expectations are imported inside the
functions that use them.

Environment:
    DATASET_PIPELINE_STORE     store root, a folder or s3://bucket/prefix (default ./data)
    DATASET_PIPELINE_S3_ENDPOINT  S3-compatible endpoint (else botocore's AWS_ENDPOINT_URL)
"""

from __future__ import annotations

import os

from dagster import Definitions

from assets import ALL_ASSETS, ALL_CHECKS
from dataset_pipeline.automation import capture_batch_job, capture_upload_sensor
from resources import CaptureRules, DatasetStoreResource


def build_resources(store_url: str | None = None) -> dict[str, object]:
    """The resources of the code location, configured from the environment."""
    return {
        "dataset_store": DatasetStoreResource(
            root_url=store_url or os.environ.get("DATASET_PIPELINE_STORE", "data"),
            endpoint_url=os.environ.get("DATASET_PIPELINE_S3_ENDPOINT") or None,
        ),
        "capture_rules": CaptureRules(),
    }


defs = Definitions(
    assets=ALL_ASSETS,
    asset_checks=ALL_CHECKS,
    jobs=[capture_batch_job],
    sensors=[capture_upload_sensor],
    resources=build_resources(),
)

"""The code location: assets, checks, resources, jobs and sensors wired together.

Loaded by ``dagster dev`` (workspace.yaml), every step process and every CLI call, so it
imports nothing heavy: torch, sam2, smp and great_expectations are imported inside the
functions that use them.

Environment:
    DATASET_PIPELINE_STORE     store root, a folder or s3://bucket/prefix (default ./data)
    DATASET_PIPELINE_S3_ENDPOINT  S3-compatible endpoint (else botocore's AWS_ENDPOINT_URL)
    DATASET_PIPELINE_S3_ACCESS_KEY_ID, DATASET_PIPELINE_S3_SECRET_ACCESS_KEY
                               the store's S3 credentials, as dagster EnvVars (else botocore's own chain)
    DATASET_PIPELINE_TAXONOMY  taxonomy YAML (default: the packaged tabletop taxonomy)
    DATASET_PIPELINE_SAM2_CHECKPOINT  SAM 2 checkpoint file; unset = classical pre-mask backend
    DATASET_PIPELINE_SAM2_CONFIG  sam2 model config (default configs/sam2.1/sam2.1_hiera_t.yaml)
    DATASET_PIPELINE_BASELINE_EPOCHS  baseline training epochs (default 20)
    DATASET_PIPELINE_LABEL_STUDIO_URL, DATASET_PIPELINE_LABEL_STUDIO_TOKEN
                               a live Label Studio: annotation_tasks pushes, label_studio_review_sensor pulls
    DATASET_PIPELINE_IMAGE_URL_MODE, DATASET_PIPELINE_LOCAL_FILES_ROOT
                               how tasks point at images (local-files under Label Studio's document root)
    DATASET_PIPELINE_EXECUTOR  ``celery`` = steps run on Celery workers (queues gpu / cpu); ``k8s`` = one
                               Kubernetes job per step (dagster-k8s in the image); unset = multiprocess
    DATASET_PIPELINE_CELERY_BROKER, DATASET_PIPELINE_CELERY_BACKEND  Celery URLs (default local RabbitMQ, rpc://)
"""

from __future__ import annotations

import os

from dagster import Definitions, EnvVar

from assets import ALL_ASSETS, ALL_CHECKS
from dataset_pipeline.automation import (
    capture_batch_job,
    capture_upload_sensor,
    corpus_job,
    label_studio_review_sensor,
    nightly_release_schedule,
    review_export_sensor,
    review_job,
)
from dataset_pipeline.sam2_premasks.sam2 import DEFAULT_MODEL_CONFIG
from resources import (
    AgreementRules,
    AnnotationToolsResource,
    BaselineSettings,
    CaptureRules,
    ComparisonRules,
    DatasetStoreResource,
    LabelStudioResource,
    QualityRules,
    ReleaseSettings,
    Sam2Resource,
    SplitRules,
    TaxonomyResource,
)


def build_resources(store_url: str | None = None) -> dict[str, object]:
    """The resources of the code location, configured from the environment."""
    return {
        "dataset_store": DatasetStoreResource(
            root_url=store_url or os.environ.get("DATASET_PIPELINE_STORE", "data"),
            endpoint_url=os.environ.get("DATASET_PIPELINE_S3_ENDPOINT") or None,
            aws_access_key_id=_secret("DATASET_PIPELINE_S3_ACCESS_KEY_ID"),
            aws_secret_access_key=_secret("DATASET_PIPELINE_S3_SECRET_ACCESS_KEY"),
        ),
        "capture_rules": CaptureRules(),
        "taxonomy": TaxonomyResource(path=os.environ.get("DATASET_PIPELINE_TAXONOMY") or None),
        "sam2": Sam2Resource(
            checkpoint_path=os.environ.get("DATASET_PIPELINE_SAM2_CHECKPOINT") or None,
            model_config_name=os.environ.get("DATASET_PIPELINE_SAM2_CONFIG") or DEFAULT_MODEL_CONFIG,
        ),
        "annotation_tools": AnnotationToolsResource(
            image_url_mode=os.environ.get("DATASET_PIPELINE_IMAGE_URL_MODE", "local-files"),
            local_files_document_root=os.environ.get("DATASET_PIPELINE_LOCAL_FILES_ROOT") or None,
        ),
        "label_studio": LabelStudioResource(
            enabled=bool(os.environ.get("DATASET_PIPELINE_LABEL_STUDIO_URL")),
            url=os.environ.get("DATASET_PIPELINE_LABEL_STUDIO_URL") or "http://127.0.0.1:8080",
            api_token=_secret("DATASET_PIPELINE_LABEL_STUDIO_TOKEN"),
        ),
        "quality_rules": QualityRules(),
        "agreement_rules": AgreementRules(),
        "split_rules": SplitRules(),
        "comparison_rules": ComparisonRules(),
        "release_settings": ReleaseSettings(),
        "baseline": BaselineSettings(epochs=int(os.environ.get("DATASET_PIPELINE_BASELINE_EPOCHS", "20"))),
    }


def _secret(name: str) -> EnvVar | None:
    """A secret as ``dagster.EnvVar`` (read when the resource starts, never shown in the UI's
    configuration or written to the run's config), or None when the variable is unset."""
    return EnvVar(name) if os.environ.get(name) else None


def build_executor():
    """The step executor: Dagster's default (multiprocess) unless DATASET_PIPELINE_EXECUTOR=celery,
    which sends each step to Celery workers through DATASET_PIPELINE_CELERY_BROKER (RabbitMQ or
    Redis URL; default the local RabbitMQ) - GPU steps to the queue ``gpu``, the others to ``cpu``
    (assets/tags.py). Imported only when chosen: the code location stays light."""
    choice = os.environ.get("DATASET_PIPELINE_EXECUTOR", "").lower()
    if choice == "k8s":  # one pod per step; GPU steps request nvidia.com/gpu through their op tags
        try:
            from dagster_k8s import k8s_job_executor
        except ImportError:
            raise ImportError(
                "DATASET_PIPELINE_EXECUTOR=k8s needs dagster-k8s==0.29.27 in the image (docs/deploy.md)"
            ) from None
        return k8s_job_executor
    if choice != "celery":
        return None
    from dagster_celery import celery_executor

    return celery_executor.configured(
        {
            "broker": os.environ.get("DATASET_PIPELINE_CELERY_BROKER", "pyamqp://guest@127.0.0.1:5672//"),
            "backend": os.environ.get("DATASET_PIPELINE_CELERY_BACKEND", "rpc://"),
        }
    )


defs = Definitions(
    assets=ALL_ASSETS,
    asset_checks=ALL_CHECKS,
    jobs=[capture_batch_job, review_job, corpus_job],
    sensors=[capture_upload_sensor, review_export_sensor, label_studio_review_sensor],
    schedules=[nightly_release_schedule],
    resources=build_resources(),
    executor=build_executor(),
)

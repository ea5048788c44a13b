"""What the environment configures: the code location's resources and its step executor.

Read once, when the code location loads (``dagster dev``, every step process, every CLI call);
the variables are listed in the package's docstring and in the README.
"""

from __future__ import annotations

import os

from dagster import EnvVar

from dataset_pipeline.sam2_premasks.models import PremaskModels
from dataset_pipeline.store import KEY_ID_VARIABLE, SECRET_VARIABLE, StoreConfig
from resources import (
    AgreementRules,
    AnnotationTeam,
    AnnotationToolsResource,
    BaselineSettings,
    CaptureRules,
    ComparisonRules,
    DatasetStoreResource,
    GuidelineResource,
    LabelStudioResource,
    PropagationSettings,
    QcRules,
    QualityRules,
    ReleaseSettings,
    RobotEnvironments,
    Sam2Resource,
    SplitRules,
    StoreIOManager,
    TaxonomyResource,
)


def build_resources(store_url: str | None = None) -> dict[str, object]:
    """The resources of the code location, configured from the environment (the store as the CLI
    reads it: ``StoreConfig.from_environment``)."""
    store = StoreConfig.from_environment(store_url)
    dataset_store = DatasetStoreResource(
        root_url=store.root_url,
        endpoint_url=store.endpoint_url,
        aws_access_key_id=_secret(KEY_ID_VARIABLE),
        aws_secret_access_key=_secret(SECRET_VARIABLE),
    )
    return {
        "dataset_store": dataset_store,
        "store_io": StoreIOManager(dataset_store=dataset_store),
        "capture_rules": CaptureRules(),
        "robot_environments": RobotEnvironments(),
        "propagation": PropagationSettings(),
        "taxonomy": TaxonomyResource(path=os.environ.get("DATASET_PIPELINE_TAXONOMY") or None),
        "sam2": _sam2_resource(),
        "annotation_tools": AnnotationToolsResource(
            image_url_mode=os.environ.get("DATASET_PIPELINE_IMAGE_URL_MODE") or None,
            local_files_document_root=os.environ.get("DATASET_PIPELINE_LOCAL_FILES_ROOT") or None,
        ),
        "label_studio": LabelStudioResource(
            enabled=bool(os.environ.get("DATASET_PIPELINE_LABEL_STUDIO_URL")),
            url=os.environ.get("DATASET_PIPELINE_LABEL_STUDIO_URL") or "http://127.0.0.1:8080",
            api_token=_secret("DATASET_PIPELINE_LABEL_STUDIO_TOKEN"),
        ),
        "annotation_team": AnnotationTeam(
            annotators=_roster(os.environ.get("DATASET_PIPELINE_ANNOTATORS", ""))
        ),
        "quality_rules": QualityRules(),
        "agreement_rules": AgreementRules(),
        "guideline": GuidelineResource(rules_path=os.environ.get("DATASET_PIPELINE_GUIDELINE") or None),
        "qc_rules": QcRules(),
        "split_rules": SplitRules(),
        "comparison_rules": ComparisonRules(),
        "release_settings": ReleaseSettings(),
        "baseline": BaselineSettings(epochs=int(os.environ.get("DATASET_PIPELINE_BASELINE_EPOCHS", "20"))),
    }


def _sam2_resource() -> Sam2Resource:
    """The pre-mask models' settings from the environment, read where the CLI reads them."""
    models = PremaskModels.from_environment()
    return Sam2Resource(
        checkpoint_path=models.checkpoint_path,
        model_config_name=models.model_config_name,
        detector_path=models.detector_path,
    )


def _roster(text: str) -> list[str]:
    """DATASET_PIPELINE_ANNOTATORS: the annotators' ids, comma-separated, in rotation order."""
    return [name.strip() for name in text.split(",") if name.strip()]


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

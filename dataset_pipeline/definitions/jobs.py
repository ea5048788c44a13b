"""The jobs: which stages run together, per upload batch or over the whole corpus."""

from dagster import AssetSelection, define_asset_job

from assets.execution import GPU_RUN_TAGS
from assets.partitions import capture_batches

#: Materialized per upload batch, in pipeline order, until the tasks go to people.
PER_BATCH_STAGES: tuple[str, ...] = ("raw_captures", "sam2_premasks", "annotation_tasks")
#: Materialized per batch when its review exports arrive.
REVIEW_STAGES: tuple[str, ...] = ("reviewed_annotations",)
#: Over the whole corpus, in pipeline order.
CORPUS_STAGES: tuple[str, ...] = (
    "annotation_corpus",
    "quality_report",
    "agreement_report",
    "dataset_splits",
    "baseline_model",
    "zero_shot_comparison",
    "active_learning_queue",
    "dataset_release",
    "dataset_card",
)

capture_batch_job = define_asset_job(
    "capture_batch_job",
    selection=AssetSelection.assets(*PER_BATCH_STAGES),
    partitions_def=capture_batches,
    tags=GPU_RUN_TAGS,
    description="Everything that runs for one upload batch, with its gating checks.",
)

review_job = define_asset_job(
    "review_job",
    selection=AssetSelection.assets(*REVIEW_STAGES),
    partitions_def=capture_batches,
    description="Imports a batch's review exports (started by review_export_sensor).",
)

corpus_job = define_asset_job(
    "corpus_job",
    selection=AssetSelection.assets(*CORPUS_STAGES),
    tags=GPU_RUN_TAGS,
    description="The whole-corpus stages: corpus, quality report and what follows.",
)

JOBS = [capture_batch_job, review_job, corpus_job]

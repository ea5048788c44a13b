"""The jobs: which stages run together, per upload batch or over the whole corpus; and the run tag
that tells the run queue a run holds a GPU step."""

from collections.abc import Iterable

from dagster import AssetSelection, define_asset_job

from assets import ALL_ASSETS
from assets.execution import GPU_RUN_TAGS, GPU_TAGS, step_tags
from assets.partitions import capture_batches

#: Materialized per upload batch, in pipeline order, until the tasks go to people.
PER_BATCH_STAGES: tuple[str, ...] = ("raw_captures", "sam2_premasks", "annotation_tasks")
#: Materialized per batch when its review exports (or QC verdicts) arrive: the import, then the
#: peer-review and audit samples and where their verdicts stand.
REVIEW_STAGES: tuple[str, ...] = ("reviewed_annotations", "qc_assignments")
#: Materialized per batch after each import (eager): the reviewed keyframes carried to the frames
#: between, which go back to people; their corrections arrive as review exports. A job of its own, so
#: that an import is a CPU run and only this one waits for a GPU.
PROPAGATION_STAGES: tuple[str, ...] = ("episode_propagation",)
#: Over the whole corpus, in pipeline order.
CORPUS_STAGES: tuple[str, ...] = (
    "annotation_guideline",
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

#: The stages whose steps want a GPU (their op tags say so).
GPU_STAGES: frozenset[str] = frozenset(
    a.key.to_user_string()
    for a in ALL_ASSETS
    if step_tags(a).get("dataset_pipeline/device") == GPU_TAGS["dataset_pipeline/device"]
)


def run_tags(stages: Iterable[str]) -> dict[str, str]:
    """The run tags of a run that materializes ``stages``: ``dataset_pipeline/uses-gpu`` when one of
    them is a GPU stage (the production run queue admits two such runs at once), nothing otherwise.

    Given per run (sensors, schedule, the CLI's per-stage runs), not per job: a job's own tags would
    mark a run of its CPU stages alone as a GPU run too. Runs started by hand in the UI carry none;
    their GPU steps are held by the ``gpu`` pool all the same.
    """
    return dict(GPU_RUN_TAGS) if GPU_STAGES.intersection(stages) else {}


capture_batch_job = define_asset_job(
    "capture_batch_job",
    selection=AssetSelection.assets(*PER_BATCH_STAGES),
    partitions_def=capture_batches,
    description="Everything that runs for one upload batch, with its gating checks.",
)

review_job = define_asset_job(
    "review_job",
    selection=AssetSelection.assets(*REVIEW_STAGES),
    partitions_def=capture_batches,
    description="Imports a batch's review exports (started by review_export_sensor).",
)

propagation_job = define_asset_job(
    "propagation_job",
    selection=AssetSelection.assets(*PROPAGATION_STAGES),
    partitions_def=capture_batches,
    description="Propagates a batch's reviewed keyframes through its episodes (after each review import).",
)

corpus_job = define_asset_job(
    "corpus_job",
    selection=AssetSelection.assets(*CORPUS_STAGES),
    description="The whole-corpus stages: corpus, quality report and what follows.",
)

JOBS = [capture_batch_job, review_job, propagation_job, corpus_job]

"""Dagster software-defined assets, one module per stage; each one calls dataset_pipeline."""

from assets.agreement_report import AGREEMENT_CHECKS, agreement_report
from assets.annotation_corpus import QUALITY_CHECKS, annotation_corpus, quality_report
from assets.annotation_tasks import annotation_tasks
from assets.baseline_model import BASELINE_CHECKS, baseline_model
from assets.dataset_release import RELEASE_CHECKS, dataset_card, dataset_release
from assets.dataset_splits import SPLIT_CHECKS, dataset_splits
from assets.partitions import capture_batches
from assets.raw_captures import captures_table_expectations, quarantine_share_under_limit, raw_captures
from assets.reviewed_annotations import reviewed_annotations
from assets.sam2_premasks import PREMASK_CHECKS, sam2_premasks
from assets.tags import CPU_TAGS, GPU_TAGS
from assets.zero_shot_comparison import ZERO_SHOT_CHECKS, active_learning_queue, zero_shot_comparison

#: Assets materialized per upload batch, in pipeline order, until the tasks go to people.
PER_BATCH_ASSETS = [raw_captures, sam2_premasks, annotation_tasks]
#: Materialized per batch when its review exports arrive.
REVIEW_ASSETS = [reviewed_annotations]
#: Over the whole corpus, in pipeline order.
CORPUS_ASSETS = [
    annotation_corpus,
    quality_report,
    agreement_report,
    dataset_splits,
    baseline_model,
    zero_shot_comparison,
    active_learning_queue,
    dataset_release,
    dataset_card,
]
ALL_ASSETS = [*PER_BATCH_ASSETS, *REVIEW_ASSETS, *CORPUS_ASSETS]
ALL_CHECKS = [
    captures_table_expectations,
    quarantine_share_under_limit,
    *PREMASK_CHECKS,
    *QUALITY_CHECKS,
    *AGREEMENT_CHECKS,
    *SPLIT_CHECKS,
    *BASELINE_CHECKS,
    *ZERO_SHOT_CHECKS,
    *RELEASE_CHECKS,
]

__all__ = [
    "AGREEMENT_CHECKS",
    "agreement_report",
    "ALL_ASSETS",
    "ALL_CHECKS",
    "CORPUS_ASSETS",
    "CPU_TAGS",
    "GPU_TAGS",
    "PER_BATCH_ASSETS",
    "REVIEW_ASSETS",
    "capture_batches",
]

"""Dagster software-defined assets: ``assets/<key>.py`` defines asset ``<key>`` and its checks, and
calls ``dataset_pipeline/<key>`` for the work. This module is their registry.

Beside the stages: ``partitions.py`` (one upload batch = one partition), ``execution.py`` (GPU /
CPU routing tags, the retry on store outages), ``reporting.py`` (tables, pictures and verdicts as metadata).
"""

from assets.active_learning_queue import active_learning_queue
from assets.agreement_report import AGREEMENT_REPORT_CHECKS, agreement_report
from assets.annotation_corpus import annotation_corpus
from assets.annotation_guideline import annotation_guideline
from assets.annotation_tasks import annotation_tasks
from assets.baseline_model import BASELINE_MODEL_CHECKS, baseline_model
from assets.dataset_card import dataset_card
from assets.dataset_release import DATASET_RELEASE_CHECKS, dataset_release
from assets.dataset_splits import DATASET_SPLITS_CHECKS, dataset_splits
from assets.episode_propagation import EPISODE_PROPAGATION_CHECKS, episode_propagation
from assets.qc_assignments import QC_ASSIGNMENTS_CHECKS, qc_assignments
from assets.quality_report import QUALITY_REPORT_CHECKS, quality_report
from assets.raw_captures import RAW_CAPTURES_CHECKS, raw_captures
from assets.reviewed_annotations import reviewed_annotations
from assets.sam2_premasks import SAM2_PREMASKS_CHECKS, sam2_premasks
from assets.zero_shot_comparison import ZERO_SHOT_COMPARISON_CHECKS, zero_shot_comparison

#: Every asset, in pipeline order.
ALL_ASSETS = [
    raw_captures,
    sam2_premasks,
    annotation_tasks,
    reviewed_annotations,
    qc_assignments,
    episode_propagation,
    annotation_guideline,
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
#: Every asset check, in the same order.
ALL_CHECKS = [
    *RAW_CAPTURES_CHECKS,
    *SAM2_PREMASKS_CHECKS,
    *QC_ASSIGNMENTS_CHECKS,
    *EPISODE_PROPAGATION_CHECKS,
    *QUALITY_REPORT_CHECKS,
    *AGREEMENT_REPORT_CHECKS,
    *DATASET_SPLITS_CHECKS,
    *BASELINE_MODEL_CHECKS,
    *ZERO_SHOT_COMPARISON_CHECKS,
    *DATASET_RELEASE_CHECKS,
]

__all__ = ["ALL_ASSETS", "ALL_CHECKS"]

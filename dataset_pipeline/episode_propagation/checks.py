"""The gating checks of episode_propagation, as verdicts (statistics → report → summary)."""

from __future__ import annotations

import pandas as pd

from dataset_pipeline.verdicts import Verdict


def consistency_verdict(consistency: pd.DataFrame, thresholds: dict[str, float]) -> Verdict:
    """Every propagated episode's classes keep their mean warped IoU at or above their category's floor.

    >>> table = pd.DataFrame({"episode_id": ["e"], "class_name": ["cup"], "category": ["rigid"],
    ...     "mean_warped_iou": [0.5], "min_warped_iou": [0.2], "threshold": [0.7], "passed": [False],
    ...     "worst_image_id": ["b/f3"], "flickers": [0]})
    >>> consistency_verdict(table, {"rigid": 0.7}).summary
    "1 of 1 episode classes under their floor, worst: e 'cup' 0.5 < 0.7 (rigid) at b/f3"
    """
    settings: dict[str, object] = {"consistency_thresholds": thresholds}
    if not len(consistency):
        return Verdict(True, "no propagated episode to score", {"episode_classes": 0}, settings=settings)
    failed = consistency[~consistency.passed].sort_values("mean_warped_iou")
    figures: dict[str, object] = {
        "episode_classes": len(consistency),
        "under_floor": len(failed),
        "lowest_mean_warped_iou": float(consistency.mean_warped_iou.min()),
    }
    if not len(failed):
        return Verdict(
            True,
            f"all {len(consistency)} episode classes at or above their floor "
            f"(lowest mean warped IoU {float(consistency.mean_warped_iou.min()):.3f})",
            figures,
            settings=settings,
        )
    worst = failed.iloc[0]
    summary = (
        f"{len(failed)} of {len(consistency)} episode classes under their floor, worst: {worst.episode_id} "
        f"{worst.class_name!r} {worst.mean_warped_iou} < {worst.threshold} ({worst.category}) at {worst.worst_image_id}"
    )
    columns = [
        "episode_id",
        "class_name",
        "category",
        "mean_warped_iou",
        "min_warped_iou",
        "threshold",
        "worst_image_id",
    ]
    return Verdict(False, summary, figures, {"under floor": failed[columns]}, settings)


def flicker_verdict(consistency: pd.DataFrame) -> Verdict:
    """No class blinks in or out for one or two frames (a warning: a person looks at those frames)."""
    flickering = consistency[consistency.flickers > 0] if len(consistency) else consistency
    total = int(flickering.flickers.sum()) if len(flickering) else 0
    if not total:
        return Verdict(True, "no flicker", {"flickers": 0})
    return Verdict(
        False,
        f"{total} flicker(s) in {len(flickering)} episode classes: a class appears or vanishes for 1-2 frames",
        {"flickers": total},
        {"flickering": flickering[["episode_id", "class_name", "flickers"]]},
        warning=True,
    )

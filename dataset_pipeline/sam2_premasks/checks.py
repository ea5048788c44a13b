"""The checks that gate a batch's pre-masks before any of them goes to people."""

from __future__ import annotations

import pandas as pd

from dataset_pipeline.masks import rle_areas
from dataset_pipeline.sam2_premasks.backends import Prompt
from dataset_pipeline.taxonomy import Taxonomy
from dataset_pipeline.verdicts import Verdict

#: Above this share of pre-masks under the score threshold, prompts or classes need revision.
REJECTED_SHARE_FLAG = 0.40


def not_empty_verdict(premasks: pd.DataFrame) -> Verdict:
    """No pre-mask is empty."""
    empty = premasks.premask_id[rle_areas(premasks.height, premasks.width, premasks.rle) == 0].tolist()
    return Verdict(
        passed=not empty,
        summary=f"{len(empty)} empty pre-mask(s): {empty[:20]}"
        if empty
        else f"all {len(premasks)} pre-masks have pixels",
        figures={"empty": len(empty), "premasks": len(premasks)},
    )


def class_ids_verdict(premasks: pd.DataFrame, taxonomy: Taxonomy) -> Verdict:
    """Every class id is a foreground class of the taxonomy (or empty, for automatic masks)."""
    valid = {c.id for c in taxonomy.foreground}
    bad = premasks[premasks.class_id.notna() & ~premasks.class_id.isin(valid)]
    return Verdict(
        passed=bad.empty,
        summary=(
            f"{len(bad)} pre-mask(s) with class ids outside {sorted(valid)}: "
            f"{list(zip(bad.premask_id.head(20), bad.class_id.head(20), strict=True))}"
            if len(bad)
            else "all class ids valid"
        ),
        figures={"invalid": len(bad)},
        settings={"path": taxonomy.source},
    )


def prompted_kept_verdict(
    premasks: pd.DataFrame, prompts: dict[str, list[Prompt]], score_threshold: float
) -> Verdict:
    """Every image that had prompts has at least one kept pre-mask (scoring ``score_threshold`` or more)."""
    kept = set(premasks.image_id[~premasks.rejected])
    missing = sorted(i for i, p in prompts.items() if p and i not in kept)
    return Verdict(
        passed=not missing,
        summary=(
            f"{len(missing)} prompted image(s) without a kept pre-mask: {missing[:20]}"
            if missing
            else f"all {len(prompts)} prompted images have a kept pre-mask"
        ),
        figures={"prompted_images": len(prompts), "without_kept_premask": len(missing)},
        settings={"score_threshold": score_threshold},
    )


def rejected_share_verdict(premasks: pd.DataFrame, flag: float = REJECTED_SHARE_FLAG) -> Verdict:
    """At most ``flag`` of the pre-masks score under the threshold."""
    share = float(premasks.rejected.mean()) if len(premasks) else 0.0
    return Verdict(
        passed=share <= flag,
        summary=f"{share:.1%} of {len(premasks)} pre-masks under the score threshold (flag above {flag:.0%})",
        figures={"rejected_share": round(share, 4)},
    )

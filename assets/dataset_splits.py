"""dataset_splits: train / val / test grouped against leakage and stratified; gated by checks."""

import json

import numpy as np
import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AutomationCondition,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from assets.agreement_report import agreement_report
from assets.annotation_corpus import quality_report
from assets.raw_captures import STORE_RETRY
from assets.reporting import table_metadata
from assets.tags import CPU_TAGS
from dataset_pipeline.annotation_corpus import CORPUS_ANNOTATIONS_KEY, CORPUS_IMAGES_KEY
from dataset_pipeline.dataset_splits import SPLITS, assign_splits, difference_hash, leaks
from dataset_pipeline.store import join_key
from resources import DatasetStoreResource, SplitRules, TaxonomyResource

SPLITS_KEY = join_key("tables", "splits", "splits.parquet")
SPLIT_INFO_KEY = join_key("tables", "splits", "info.json")


def class_presence(annotations: pd.DataFrame, classes) -> pd.DataFrame:
    """0/1 per image (rows) and foreground class (columns, by name): any annotator drew it."""
    names = {c.id: c.name for c in classes.foreground}
    present = annotations.assign(name=annotations.class_id.map(names)).dropna(subset=["name"])
    table = pd.crosstab(present.image_id, present.name).clip(upper=1)
    return table.reindex(columns=[c.name for c in classes.foreground], fill_value=0)


@asset(
    op_tags=CPU_TAGS,
    retry_policy=STORE_RETRY,
    deps=[agreement_report, quality_report],
    group_name="training",
    kinds={"parquet"},
    automation_condition=AutomationCondition.eager(),
    description="70/15/15 splits with no scene, episode or near-duplicate in two splits, stratified by lighting "
    "and class presence, deterministic by seed, optional held-out environments.",
)
def dataset_splits(
    context: AssetExecutionContext,
    dataset_store: DatasetStoreResource,
    taxonomy: TaxonomyResource,
    split_rules: SplitRules,
) -> MaterializeResult:
    store = dataset_store.get_store()
    classes = taxonomy.load()
    images = store.read_parquet(CORPUS_IMAGES_KEY)
    annotations = store.read_parquet(CORPUS_ANNOTATIONS_KEY)
    hashes = np.array([difference_hash(store.read_bytes(uri)) for uri in images.uri], dtype=np.uint64)
    presence = class_presence(annotations, classes)
    plan = assign_splits(
        images,
        presence,
        shares=split_rules.shares(),
        seed=split_rules.seed,
        held_out_scenes=split_rules.held_out_scenes,
        hashes=hashes,
        hash_distance=split_rules.hash_distance,
    )
    table = plan.assignments.assign(dhash=[f"{h:016x}" for h in hashes])
    store.write_parquet(SPLITS_KEY, table)
    found = leaks(plan.assignments, images, hashes, split_rules.hash_distance)
    merged = images.merge(plan.assignments, on="image_id")
    per_split = merged.groupby("split").agg(
        images=("image_id", "size"), scenes=("scene_id", "nunique"), groups=("group", "nunique")
    )
    lighting = pd.crosstab(merged.split, merged.lighting)
    instances = pd.crosstab(
        annotations.merge(plan.assignments, on="image_id").split,
        annotations.class_id.map({c.id: c.name for c in classes.foreground}),
    )
    summary = (
        per_split.join(lighting).join(instances).reindex(list(SPLITS)).fillna(0).astype(int).reset_index()
    )
    info = {
        "shares": plan.shares,
        "targets": plan.targets,
        "groups": int(plan.assignments.group.nunique()),
        "largest_group_share": float(plan.assignments.group.value_counts(normalize=True).max())
        if len(table)
        else 0.0,
        "leaks": found,
        "classes_missing": {
            s: [
                c
                for c in presence.columns
                if int(presence.reindex(merged[merged.split == s].image_id).fillna(0)[c].sum()) == 0
            ]
            for s in SPLITS
        },
        "notes": plan.notes,
        "seed": split_rules.seed,
    }
    store.write_bytes(SPLIT_INFO_KEY, json.dumps(info, indent=2).encode())
    return MaterializeResult(
        metadata={
            **{f"{s}_images": int((table.split == s).sum()) for s in SPLITS},
            **{f"{s}_share": round(plan.shares[s], 4) for s in SPLITS},
            "groups": info["groups"],
            "per split": table_metadata(summary),
            "splits_table": MetadataValue.path(store.url(SPLITS_KEY)),
        }
    )


def _info(dataset_store: DatasetStoreResource) -> dict:
    return json.loads(dataset_store.get_store().read_bytes(SPLIT_INFO_KEY))


@asset_check(
    asset=dataset_splits,
    blocking=True,
    description="No scene, episode, checksum or near-duplicate sits in two splits.",
)
def splits_no_leakage(
    context: AssetCheckExecutionContext, dataset_store: DatasetStoreResource
) -> AssetCheckResult:
    found = _info(dataset_store)["leaks"]
    return AssetCheckResult(
        passed=not found,
        description="; ".join(found[:20]) or "no leakage across splits",
        metadata={"leaks": len(found)},
    )


@asset_check(
    asset=dataset_splits,
    blocking=True,
    description="Each split's share is within the tolerance of its target.",
)
def split_shares_on_target(
    context: AssetCheckExecutionContext, dataset_store: DatasetStoreResource, split_rules: SplitRules
) -> AssetCheckResult:
    info = _info(dataset_store)
    off = {
        s: (info["shares"][s], info["targets"][s])
        for s in SPLITS
        if abs(info["shares"][s] - info["targets"][s]) > split_rules.share_tolerance
    }
    description = ", ".join(
        f"{s} {v:.1%} (target {t:.0%})"
        for s, (v, t) in ((s, (info["shares"][s], info["targets"][s])) for s in SPLITS)
    )
    if off:
        description = (
            f"off target: {', '.join(off)}; the groups allow no closer split: {info['groups']} leakage groups, "
            f"the largest holds {info['largest_group_share']:.0%} of the images. " + description
        )
    return AssetCheckResult(passed=not off, description=description, metadata={"groups": info["groups"]})


@asset_check(asset=dataset_splits, blocking=False, description="Warns when a class is absent from a split.")
def every_class_in_every_split(
    context: AssetCheckExecutionContext, dataset_store: DatasetStoreResource
) -> AssetCheckResult:
    missing = {s: names for s, names in _info(dataset_store)["classes_missing"].items() if names}
    return AssetCheckResult(
        passed=not missing,
        severity=AssetCheckSeverity.WARN,
        description="; ".join(f"{s} lacks {', '.join(n)}" for s, n in missing.items())
        or "every class in every split",
    )


SPLIT_CHECKS = [splits_no_leakage, split_shares_on_target, every_class_in_every_split]

"""dataset_splits: train / val / test grouped against leakage and stratified; gated by checks."""

import json

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetExecutionContext,
    AutomationCondition,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from assets.execution import CPU_TAGS, retried_on_store_outage
from assets.reporting import check_result, table_metadata
from dataset_pipeline import layout
from dataset_pipeline.dataset_splits import (
    SPLITS,
    classes_verdict,
    leakage_verdict,
    shares_verdict,
    update_splits,
    write_splits,
)
from resources import DatasetStoreResource, SplitRules, TaxonomyResource


@asset(
    op_tags=CPU_TAGS,
    deps=["agreement_report", "quality_report"],
    group_name="training",
    kinds={"parquet"},
    automation_condition=AutomationCondition.eager(),
    description="70/15/15 splits with no scene, episode or near-duplicate in two splits, stratified by lighting "
    "and class presence, deterministic by seed, optional held-out environments.",
)
@retried_on_store_outage
def dataset_splits(
    context: AssetExecutionContext,
    dataset_store: DatasetStoreResource,
    taxonomy: TaxonomyResource,
    split_rules: SplitRules,
) -> MaterializeResult:
    store = dataset_store.get_store()
    outcome = update_splits(
        store,
        taxonomy.load(),
        shares=split_rules.shares(),
        seed=split_rules.seed,
        held_out_scenes=split_rules.held_out_scenes,
        hash_distance=split_rules.hash_distance,
    )
    write_splits(store, outcome)
    shares, images = (
        outcome.info["shares"],
        dict(zip(outcome.summary.split, outcome.summary.images, strict=True)),
    )
    return MaterializeResult(
        metadata={
            **{f"{s}_images": int(images[s]) for s in SPLITS},
            **{f"{s}_share": round(shares[s], 4) for s in SPLITS},
            "groups": outcome.info["groups"],
            # A batch's features (dHash, class instances) are made once; a rebuild makes new or changed ones.
            "batches made again": f"{len(outcome.made)} of {len(outcome.batches)}",
            "per split": table_metadata(outcome.summary),
            "splits_table": MetadataValue.path(store.url(layout.SPLITS_KEY)),
        }
    )


def _info(dataset_store: DatasetStoreResource) -> dict:
    return json.loads(dataset_store.get_store().read_bytes(layout.SPLIT_INFO_KEY))


@asset_check(
    asset=dataset_splits,
    blocking=True,
    description="No scene, episode, checksum or near-duplicate sits in two splits.",
)
def splits_no_leakage(
    context: AssetCheckExecutionContext, dataset_store: DatasetStoreResource, split_rules: SplitRules
) -> AssetCheckResult:
    return check_result(
        leakage_verdict(_info(dataset_store), split_rules.hash_distance), resource="split_rules"
    )


@asset_check(
    asset=dataset_splits,
    blocking=True,
    description="Each split's share is within the tolerance of its target; when no split keeping the leakage "
    "groups whole can be, a warning that does not block.",
)
def split_shares_on_target(
    context: AssetCheckExecutionContext, dataset_store: DatasetStoreResource, split_rules: SplitRules
) -> AssetCheckResult:
    verdict = shares_verdict(_info(dataset_store), split_rules.share_tolerance, split_rules.seed)
    return check_result(verdict, resource="split_rules")


@asset_check(asset=dataset_splits, blocking=False, description="Warns when a class is absent from a split.")
def every_class_in_every_split(
    context: AssetCheckExecutionContext, dataset_store: DatasetStoreResource
) -> AssetCheckResult:
    return check_result(classes_verdict(_info(dataset_store)), warn=True)


DATASET_SPLITS_CHECKS = [splits_no_leakage, split_shares_on_target, every_class_in_every_split]

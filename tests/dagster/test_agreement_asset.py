"""agreement_report in a Dagster run: a class below its threshold blocks what depends on it."""

from dagster import AssetKey, asset, instance_for_test, materialize

from assets.agreement_report import AGREEMENT_REPORT_CHECKS, agreement_report
from dataset_pipeline.annotation_corpus import update_corpus
from dataset_pipeline.store import DatasetStore
from resources import AgreementRules, DatasetStoreResource, TaxonomyResource


@asset(deps=[AssetKey("agreement_report")])
def stands_for_dataset_splits() -> None:
    """Must not run when agreement_meets_thresholds fails."""


def test_class_below_threshold_blocks_downstream_in_a_dagster_run(reviewed_b48, tmp_path):
    source, _ = reviewed_b48
    store = DatasetStore(str(tmp_path / "store"))  # the shared corpus's store stays as it is
    for key in source.list("incoming", recursive=True):
        store.put_upload(key, source.read_bytes(key))
    for key in source.list("tables", recursive=True):
        if not key.startswith("tables/corpus/"):
            store.write_bytes(key, source.read_bytes(key))
    update_corpus(store)  # the batch parts annotation_corpus writes are what agreement_report reads
    resources = {
        "dataset_store": DatasetStoreResource(root_url=store.root_url),
        "taxonomy": TaxonomyResource(),
        "agreement_rules": AgreementRules(threshold_overrides={"container": 0.99}, boundary=False),
    }
    with instance_for_test() as instance:
        result = materialize(
            [agreement_report, *AGREEMENT_REPORT_CHECKS, stands_for_dataset_splits],
            instance=instance,
            resources=resources,
            raise_on_error=False,
        )
    check = next(
        e for e in result.get_asset_check_evaluations() if e.check_name == "agreement_meets_thresholds"
    )
    assert not check.passed
    assert "container IoU" in check.description and "< 0.99" in check.description
    assert AssetKey("stands_for_dataset_splits") not in {
        e.asset_key for e in result.get_asset_materialization_events()
    }
    assert AssetKey("agreement_report") in {e.asset_key for e in result.get_asset_materialization_events()}

"""raw_captures materialized through Dagster, in process (on S3: services/test_s3.py)."""

import pytest
from dagster import AssetKey, DagsterInstance, asset, instance_for_test, materialize

from assets.partitions import capture_batches
from assets.raw_captures import captures_table_expectations, quarantine_share_under_limit, raw_captures
from dataset_pipeline.layout import captures_key, quarantine_key
from resources import CaptureRules, DatasetStoreResource, PropagationSettings, RobotEnvironments
from tests.conftest import copy_upload


@asset(deps=[raw_captures], partitions_def=capture_batches)
def downstream_of_captures() -> None:
    """Stands for sam2_premasks: it must not run when a blocking check of raw_captures fails."""


def materialize_batch(
    instance: DagsterInstance, store_resource: DatasetStoreResource, batch: str, rules=None
):
    if batch not in instance.get_dynamic_partitions(capture_batches.name):
        instance.add_dynamic_partitions(capture_batches.name, [batch])
    return materialize(
        [raw_captures, captures_table_expectations, quarantine_share_under_limit, downstream_of_captures],
        partition_key=batch,
        instance=instance,
        resources={
            "dataset_store": store_resource,
            "capture_rules": rules or CaptureRules(),
            "robot_environments": RobotEnvironments(),
            "propagation": PropagationSettings(),
        },
        raise_on_error=False,
    )


def _checks(result):
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def _materialized(result):
    return {e.asset_key for e in result.get_asset_materialization_events()}


@pytest.fixture
def instance():
    with instance_for_test() as instance:
        yield instance


def test_materializes_demo_batch_and_reads_back_table(demo_batch, local_store, instance):
    source, upload = demo_batch
    copy_upload(source, upload.batch, local_store)
    result = materialize_batch(instance, DatasetStoreResource(root_url=local_store.root_url), upload.batch)
    assert result.success
    captures = local_store.read_parquet(captures_key(upload.batch))
    assert len(captures) == 16 and captures.image_id.is_unique
    assert local_store.read_parquet(quarantine_key(upload.batch)).empty
    checks = _checks(result)
    assert checks["captures_table_expectations"].passed
    assert checks["quarantine_share_under_limit"].passed
    assert _materialized(result) == {AssetKey("raw_captures"), AssetKey("downstream_of_captures")}
    metadata = result.asset_materializations_for_node("raw_captures")[0].metadata
    assert metadata["images"].value == 16
    assert metadata["contact sheet"].value.startswith(
        ("![contact sheet](data:image/png;base64,", "![contact sheet](data:image/jpeg;base64,")
    )
    assert len(metadata["contact sheet"].value) < 400_000
    assert local_store.exists(f"previews/raw_captures/{upload.batch}/contact_sheet.png")
    assert "kitchen_a" in metadata["images per scene and lighting"].value
    # the materialization is recorded per partition in the instance
    assert instance.get_materialized_partitions(AssetKey("raw_captures")) == {upload.batch}


def test_quarantine_over_limit_blocks_downstream(demo_batch, local_store, instance):
    source, upload = demo_batch
    batch = "corrupted"
    for key in source.list(f"incoming/{upload.batch}", recursive=True):
        name = key.split("/", 2)[2]
        data = source.read_bytes(key)
        if name.startswith("images/") and name.endswith("_f000.jpg"):
            data = data[:300]  # truncate the first frame of every episode
        if name != "manifest.csv":
            local_store.put_upload(f"incoming/{batch}/{name}", data)
    local_store.put_upload(
        f"incoming/{batch}/manifest.csv", source.read_bytes(f"incoming/{upload.batch}/manifest.csv")
    )
    result = materialize_batch(instance, DatasetStoreResource(root_url=local_store.root_url), batch)
    checks = _checks(result)
    assert not checks["quarantine_share_under_limit"].passed
    assert "4 of 16 images quarantined" in checks["quarantine_share_under_limit"].description
    # the refusal names the settings that decide it and how to change them
    assert "capture_rules.max_quarantine_share = 0.05" in checks["quarantine_share_under_limit"].description
    assert "capture_rules.min_quarantined_to_block = 3" in checks["quarantine_share_under_limit"].description
    assert "Resources → capture_rules" in checks["quarantine_share_under_limit"].description
    assert checks["captures_table_expectations"].passed  # the 12 good images are fine
    assert AssetKey("downstream_of_captures") not in _materialized(result)
    quarantine = local_store.read_parquet(quarantine_key(batch))
    assert sorted(quarantine.image_file.str.endswith("_f000.jpg")) == [True] * 4


def test_expectation_failure_blocks_downstream_and_names_the_rows(demo_batch, local_store, instance):
    source, upload = demo_batch
    copy_upload(source, upload.batch, local_store)
    rules = CaptureRules(allowed_lighting=["daylight", "warm"])  # the batch also has "dim" images
    result = materialize_batch(
        instance, DatasetStoreResource(root_url=local_store.root_url), upload.batch, rules
    )
    check = _checks(result)["captures_table_expectations"]
    assert not check.passed
    assert "ExpectColumnValuesToBeInSet(column='lighting'" in check.description
    assert "capture_rules.allowed_lighting = ['daylight', 'warm']" in check.description
    assert f"{upload.batch}/images/" in check.description  # the offending image ids are listed
    assert AssetKey("downstream_of_captures") not in _materialized(result)


def test_manifest_without_required_column_fails_naming_it(demo_batch, local_store, instance):
    source, upload = demo_batch
    manifest = source.read_bytes(f"incoming/{upload.batch}/manifest.csv").decode()
    lines = [
        ",".join(line.split(",")[:4] + line.split(",")[5:]) for line in manifest.splitlines()
    ]  # drop lighting
    local_store.put_upload("incoming/badmanifest/manifest.csv", ("\n".join(lines) + "\n").encode())
    result = materialize_batch(instance, DatasetStoreResource(root_url=local_store.root_url), "badmanifest")
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.user_failure_data.description
    assert "missing required column(s) 'lighting'" in message
    assert "incoming/badmanifest/manifest.csv" in message
    assert not local_store.exists(captures_key("badmanifest"))  # nothing written


def test_two_bad_files_in_a_small_batch_do_not_block_it(demo_batch, local_store, instance):
    """A real 39-image upload had a truncated and a missing image: 5.1%, over the 5% share, yet the
    37 good images should go on. Below `min_quarantined_to_block` (3) images the share does not block."""
    source, upload = demo_batch
    batch = "two-bad"
    for key in source.list(f"incoming/{upload.batch}", recursive=True):
        name = key.split("/", 2)[2]
        data = source.read_bytes(key)
        if name.startswith("images/") and name.endswith("_f000.jpg"):
            data = data[:300]
        if name != "manifest.csv":
            local_store.put_upload(f"incoming/{batch}/{name}", data)
    manifest = source.read_bytes(f"incoming/{upload.batch}/manifest.csv").decode().splitlines()
    bad = [i for i, line in enumerate(manifest) if "_f000.jpg" in line][2:]  # keep two bad rows of 14
    local_store.put_upload(
        f"incoming/{batch}/manifest.csv",
        ("\n".join(line for i, line in enumerate(manifest) if i not in bad) + "\n").encode(),
    )
    result = materialize_batch(instance, DatasetStoreResource(root_url=local_store.root_url), batch)
    check = _checks(result)["quarantine_share_under_limit"]
    assert check.passed
    assert (
        "2 of 14 images quarantined (14.3%, limit 5.0%): over the share, but fewer than 3"
        in check.description
    )
    assert AssetKey("downstream_of_captures") in _materialized(result)
    stricter = CaptureRules(min_quarantined_to_block=2)
    again = materialize_batch(instance, DatasetStoreResource(root_url=local_store.root_url), batch, stricter)
    assert not _checks(again)["quarantine_share_under_limit"].passed

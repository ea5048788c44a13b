"""capture_upload_sensor: one run per batch, ever (on a local folder; services/test_s3.py: on S3)."""

import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    SensorResult,
    SkipReason,
    build_sensor_context,
    instance_for_test,
)

from dataset_pipeline.definitions.sensors import capture_upload_sensor
from resources import DatasetStoreResource

MANIFEST = b"image_file,capture_ts,camera_model,scene_id,lighting,episode_id,frame_index\nimages/a.jpg,2026-01-01T00:00:00Z,c,s,dim,e,0\n"


@pytest.fixture
def store_and_resource(local_store):
    return local_store, DatasetStoreResource(root_url=local_store.root_url)


def _tick(instance, resource, cursor=None):
    context = build_sensor_context(instance=instance, cursor=cursor, resources={"dataset_store": resource})
    return capture_upload_sensor(context)


def test_new_batch_gives_one_run_and_then_none(store_and_resource):
    store, resource = store_and_resource
    with instance_for_test() as instance:
        assert isinstance(_tick(instance, resource), SkipReason)  # empty store

        store.put_upload("incoming/b-1/images/a.jpg", b"jpeg")
        assert isinstance(_tick(instance, resource), SkipReason)  # no manifest yet: still uploading

        store.put_upload("incoming/b-1/manifest.csv", MANIFEST)
        first = _tick(instance, resource)
        assert isinstance(first, SensorResult)
        assert [r.partition_key for r in first.run_requests] == ["b-1"]
        assert first.run_requests[0].run_key == "capture_batch:b-1"
        assert first.run_requests[0].tags["dataset_pipeline/uses-gpu"] == "true"  # the batch job pre-masks
        assert first.dynamic_partitions_requests[0].partition_keys == ["b-1"]

        # the same batch on the next tick (cursor carried over): nothing
        again = _tick(instance, resource, cursor=first.cursor)
        assert isinstance(again, SkipReason)

        # a second batch: only it is requested
        store.put_upload("incoming/b-2/manifest.csv", MANIFEST)
        second = _tick(instance, resource, cursor=first.cursor)
        assert [r.partition_key for r in second.run_requests] == ["b-2"]


def test_a_robot_dataset_upload_is_a_batch_once_its_marker_is_written(store_and_resource):
    store, resource = store_and_resource
    with instance_for_test() as instance:
        store.put_upload("incoming/lr-1/meta/info.json", b"{}")
        store.put_upload("incoming/lr-1/data/chunk-000/file-000.parquet", b"...")
        assert isinstance(_tick(instance, resource), SkipReason)  # still uploading: no marker
        store.put_upload("incoming/lr-1/UPLOAD_COMPLETE", b"")
        tick = _tick(instance, resource)
        assert isinstance(tick, SensorResult)
        assert [r.partition_key for r in tick.run_requests] == ["lr-1"]


def test_restart_without_cursor_does_not_rerun_materialized_batches(local_store):
    resource = DatasetStoreResource(root_url=local_store.root_url)
    local_store.put_upload("incoming/done/manifest.csv", MANIFEST)
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("capture_batches", ["done"])
        instance.report_runless_asset_event(AssetMaterialization(AssetKey("raw_captures"), partition="done"))
        result = _tick(instance, resource, cursor=None)  # e.g. the sensor was reset
        assert isinstance(result, SensorResult)
        assert result.run_requests == []
        assert result.dynamic_partitions_requests == []
        assert "done" in result.cursor


def test_folders_with_invalid_batch_names_are_ignored(local_store):
    local_store.put_upload("incoming/bad name!/manifest.csv", MANIFEST)
    with instance_for_test() as instance:
        assert isinstance(_tick(instance, DatasetStoreResource(root_url=local_store.root_url)), SkipReason)


def test_a_new_review_leads_to_the_corpus_stages_without_anyone_turning_a_sensor_on():
    from dagster import (
        AutomationConditionSensorDefinition,
        DefaultSensorStatus,
        evaluate_automation_conditions,
    )

    from dataset_pipeline.definitions import defs

    sensor = defs.resolve_sensor_def("automation_condition_sensor")
    assert isinstance(sensor, AutomationConditionSensorDefinition)
    assert sensor.default_status == DefaultSensorStatus.RUNNING  # on in a fresh `dagster dev`
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("capture_batches", ["b1"])
        first = evaluate_automation_conditions(defs=defs, instance=instance)
        assert first.total_requested == 0  # nothing new: nothing runs
        instance.report_runless_asset_event(
            AssetMaterialization(AssetKey("reviewed_annotations"), partition="b1")
        )
        after = evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        requested = {r.key.to_user_string() for r in after.results if r.true_subset.size}
    assert {
        "annotation_guideline",
        "annotation_corpus",
        "quality_report",
        "agreement_report",
        "dataset_splits",
    } <= requested
    assert "qc_assignments" in requested  # the batch's QC samples, drawn or topped up
    assert "episode_propagation" in requested  # the batch's reviewed keyframes, carried through its episodes
    assert "dataset_release" not in requested  # the release follows the nightly schedule

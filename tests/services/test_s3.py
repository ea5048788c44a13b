"""The store, ingestion, the release, the upload sensor and the failure modes on S3: moto's server
on 127.0.0.1, through the real s3fs / botocore clients.

The tests written against ``any_store`` (and the sensor's ``store_and_resource``) in the other
lanes run here again on an S3 store: they are collected a second time below, with those
fixtures answering with S3.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time

import numpy as np
import pandas as pd
import pytest
from dagster import DagsterInstance, EnvVar, materialize
from dagster._serdes import serialize_value

from assets.partitions import capture_batches
from assets.raw_captures import captures_table_expectations, quarantine_share_under_limit, raw_captures
from dataset_pipeline import dataset_release as release
from dataset_pipeline.layout import captures_key, task_files
from dataset_pipeline.raw_captures import ingest_batch
from dataset_pipeline.store import DatasetStore
from resources import CaptureRules, DatasetStoreResource, PropagationSettings, RobotEnvironments
from tests.conftest import copy_upload, demo_command, demo_corpus, strict_taxonomy
from tests.dagster import test_raw_captures_asset, test_sensor
from tests.services.conftest import S3_ENV
from tests.unit import test_captures, test_store
from tests.unit.test_dataset_release import FORMATS, make_content, released_then_grown
from tests.unit.test_faults import _checksums

# -- the local tests, again on S3 -------------------------------------------------------------

test_read_write_list_round_trip = test_store.test_read_write_list_round_trip
test_tables_read_as_arrow_or_pandas_and_a_corrupt_one_is_named = (
    test_store.test_tables_read_as_arrow_or_pandas_and_a_corrupt_one_is_named
)
test_escaping_keys_are_refused_by_every_operation = (
    test_store.test_escaping_keys_are_refused_by_every_operation
)
test_raw_uploads_are_never_modified = test_store.test_raw_uploads_are_never_modified
test_ready_batches_are_those_with_a_manifest = test_captures.test_ready_batches_are_those_with_a_manifest
test_new_batch_gives_one_run_and_then_none = test_sensor.test_new_batch_gives_one_run_and_then_none


@pytest.fixture
def any_store(s3_store: DatasetStore) -> DatasetStore:
    return s3_store


@pytest.fixture
def store_and_resource(s3_store: DatasetStore, s3_endpoint: str):
    return s3_store, DatasetStoreResource(root_url=s3_store.root_url, endpoint_url=s3_endpoint)


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as instance:
        yield instance


materialize_batch = test_raw_captures_asset.materialize_batch

# -- what only S3 has -------------------------------------------------------------------------


def test_resource_builds_an_s3_store_from_configuration(s3_endpoint, s3_bucket):
    resource = DatasetStoreResource(root_url=f"s3://{s3_bucket}/prefix", endpoint_url=s3_endpoint)
    store = resource.get_store()
    store.write_bytes("tables/x.bin", b"via resource")
    import boto3

    body = boto3.client("s3", endpoint_url=s3_endpoint).get_object(
        Bucket=s3_bucket, Key="prefix/tables/x.bin"
    )
    assert body["Body"].read() == b"via resource"
    assert store.url("tables/x.bin") == f"s3://{s3_bucket}/prefix/tables/x.bin"


def test_resource_reads_the_standard_aws_environment(s3_endpoint, s3_bucket, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    store = DatasetStoreResource(root_url=f"s3://{s3_bucket}/env").get_store()
    store.write_bytes("a.txt", b"from env")
    assert store.read_bytes("a.txt") == b"from env"


def test_ingest_from_s3_matches_local(demo_batch, s3_store):
    source, upload = demo_batch
    copy_upload(source, upload.batch, s3_store)
    remote = ingest_batch(s3_store, upload.batch)
    local = ingest_batch(source, upload.batch)
    pd.testing.assert_frame_equal(remote.captures, local.captures)
    assert np.array_equal(next(iter(remote.thumbnails.values())), next(iter(local.thumbnails.values())))


def test_release_on_s3_reloads(s3_store):
    content = make_content(s3_store, *demo_corpus(s3_store, "rel-s3", 8))
    version = release.release_version(content, FORMATS)
    release.write_exports(content, version, FORMATS)
    assert {f: release.validate_format(content, version, f) for f in FORMATS} == {f: [] for f in FORMATS}
    assert s3_store.exists(f"releases/{version}/hdf5/train.h5")


def test_an_incremental_release_on_s3_shares_unchanged_files_by_server_side_copy(s3_store):
    """On S3 the next release's unchanged files are CopyObject copies of the last one's (no bytes
    through this machine): the same bytes under the new keys, and the release reads back whole."""
    second, v1, v2, grown = released_then_grown(s3_store, "inc-s3", FORMATS)
    assert grown.files_linked > 0 and grown.reused_from == f"releases/{v1}"
    index = s3_store.read_parquet(f"releases/{v2}/index.parquet")
    for row in index[index.reused].head(20).itertuples():
        assert s3_store.read_bytes(f"releases/{v2}/{row.file}") == s3_store.read_bytes(
            f"releases/{v1}/{row.source}"
        )
    assert {f: release.validate_format(second, v2, f) for f in FORMATS} == {f: [] for f in FORMATS}
    some_file = release.release_folder(s3_store, v1).list()[0]
    assert s3_store.link(f"releases/{v1}/{some_file}", "scratch/copied") == "server-copy"


def test_materializes_from_s3(demo_batch, s3_store, s3_endpoint, instance):
    source, upload = demo_batch
    copy_upload(source, upload.batch, s3_store)
    resource = DatasetStoreResource(root_url=s3_store.root_url, endpoint_url=s3_endpoint)
    result = materialize_batch(instance, resource, upload.batch)
    assert result.success
    assert len(s3_store.read_parquet(captures_key(upload.batch))) == 16


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _ingest_run(instance: DagsterInstance, resource: DatasetStoreResource, batch: str):
    """raw_captures and its checks for one batch."""
    instance.add_dynamic_partitions(capture_batches.name, [batch])
    return materialize(
        [raw_captures, captures_table_expectations, quarantine_share_under_limit],
        partition_key=batch,
        instance=instance,
        resources={
            "dataset_store": resource,
            "capture_rules": CaptureRules(),
            "robot_environments": RobotEnvironments(),
            "propagation": PropagationSettings(),
        },
        raise_on_error=False,
    )


def test_an_s3_outage_fails_the_step_clearly_and_the_retries_finish_the_run(demo_batch, monkeypatch):
    """The S3 server is down when the run starts and comes back 4 s later: the first attempts fail
    with a StoreError naming the URL, retried_on_store_outage (2 s, doubling) retries, and the run completes
    with the same table a run without outage writes."""
    from moto.server import ThreadedMotoServer

    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    import boto3

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="outage")
    resource = DatasetStoreResource(
        root_url="s3://outage/store", endpoint_url=endpoint, max_attempts=1, connect_timeout_s=1
    )
    store = resource.get_store()
    source, upload = demo_batch
    copy_upload(source, upload.batch, store)
    raw_before = _checksums(store, "incoming")
    server.stop()  # the outage (moto keeps its buckets in this process)
    restarted = []

    def come_back() -> None:
        time.sleep(4)
        back = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        back.start()
        restarted.append(back)

    threading.Thread(target=come_back, daemon=True).start()
    try:
        with DagsterInstance.ephemeral() as instance:
            result = _ingest_run(instance, resource, upload.batch)
            events = result.all_events
        retries = [e for e in events if e.event_type_value == "STEP_UP_FOR_RETRY"]
        retried = serialize_value(retries[0]) if retries else ""
        assert result.success
        assert retries, "the step failed at least once during the outage and was retried"
        # the step's first read: whether the batch is a robot dataset's upload (its marker)
        assert f"s3://outage/store/incoming/{upload.batch}/UPLOAD_COMPLETE: cannot reach the store" in retried
        assert "Could not connect to the endpoint URL" in retried
        assert len(store.read_parquet(captures_key(upload.batch))) == 16  # nothing lost or duplicated
        assert _checksums(store, "incoming") == raw_before
    finally:
        for back in restarted:
            back.stop()


def test_planted_secrets_never_reach_logs_metadata_or_errors(
    s3_endpoint, s3_bucket, demo_batch, monkeypatch, capfd
):
    """S3 credentials given as dagster EnvVars: not in the event log (messages, metadata, errors),
    not in the run's stored config, not on stdout/stderr - for a run that succeeds and one that fails."""
    key_id, secret = "AKIAPLANTED0000SECRET", "planted-secret-k9Zq2xW7vB4nR1"
    monkeypatch.setenv("PLANTED_KEY_ID", key_id)
    monkeypatch.setenv("PLANTED_SECRET", secret)
    source, upload = demo_batch
    seen: list[str] = []
    for root in (f"s3://{s3_bucket}/store", "s3://no-such-bucket-for-secrets/store"):
        resource = DatasetStoreResource(
            root_url=root,
            endpoint_url=s3_endpoint,
            aws_access_key_id=EnvVar("PLANTED_KEY_ID"),
            aws_secret_access_key=EnvVar("PLANTED_SECRET"),
            max_attempts=1,
        )
        if "no-such" not in root:
            copy_upload(source, upload.batch, DatasetStore(root, {"endpoint_url": s3_endpoint}))
        with DagsterInstance.ephemeral() as instance:
            result = _ingest_run(instance, resource, upload.batch)
            assert result.success is ("no-such" not in root)
            seen += [serialize_value(record) for record in instance.all_logs(result.run_id)]
            seen.append(serialize_value(instance.get_run_by_id(result.run_id)))
    captured = capfd.readouterr()
    seen += [captured.out, captured.err]
    assert any("no-such-bucket-for-secrets" in text for text in seen)  # the failure is in the logs...
    assert not [text for text in seen if key_id in text or secret in text]  # ...the secrets are not


def test_the_cli_demo_runs_on_an_s3_store_given_by_out_and_the_endpoint_variable(
    s3_endpoint, s3_bucket, tmp_path
):
    """`dataset-pipeline demo --out s3://...` with DATASET_PIPELINE_S3_ENDPOINT: the upload, the
    per-batch stages and their tables are on S3, and the task files point annotators at the
    store's s3:// URLs (the image URL mode an S3 store defaults to). 60 images and a stricter
    taxonomy, so that the run ends early, at the agreement gate, as it does on a folder."""
    root = f"s3://{s3_bucket}/segmentation"
    command = demo_command(root, tmp_path / "home")
    command[command.index("--images") + 1] = "60"
    env = os.environ | {
        "DATASET_PIPELINE_S3_ENDPOINT": s3_endpoint,
        "DATASET_PIPELINE_TAXONOMY": str(strict_taxonomy(tmp_path)),
    }
    out = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"dataset store: {root}" in out.stdout
    assert "annotation_tasks [demo-s0-n60]: ok" in out.stdout and "image_url_mode=store" in out.stdout
    assert "check agreement_meets_thresholds: FAILED" in out.stdout and "Traceback" not in out.stderr

    store = DatasetStore(root, {"endpoint_url": s3_endpoint})
    assert len(store.read_parquet(captures_key("demo-s0-n60"))) == 60
    tasks = json.loads(store.read_bytes(task_files("demo-s0-n60")["label_studio_tasks"]))
    assert len(tasks) == 60
    assert all(task["data"]["image"].startswith(f"{root}/incoming/demo-s0-n60/") for task in tasks)
    assert not (tmp_path / "segmentation").exists()  # nothing went to a local folder of that name
    assert f"DATASET_PIPELINE_STORE={root} DATASET_PIPELINE_S3_ENDPOINT={s3_endpoint} " in out.stdout


def test_ml_backend_reads_the_s3_images_of_a_bucket_connected_to_label_studio(s3_endpoint, s3_bucket):
    """A task from a bucket connected as source storage carries ``s3://bucket/key``; the backend reads it
    with its own credentials (s3fs, the endpoint of a MinIO or moto) and answers the click."""
    import io

    import boto3
    from PIL import Image
    from starlette.testclient import TestClient

    from dataset_pipeline.formats.label_studio.codec import brush_rle_to_mask
    from dataset_pipeline.formats.label_studio.tasks import labeling_config
    from dataset_pipeline.interactive.images import ImageFetcher
    from dataset_pipeline.interactive.label_studio import LabelStudioMLBackend, create_app
    from dataset_pipeline.interactive.session import InteractiveSession
    from dataset_pipeline.sam2_premasks.classical import ClassicalBackend
    from dataset_pipeline.taxonomy import load_taxonomy

    image = np.full((90, 120, 3), 140, np.uint8)
    image[30:60, 40:80] = (20, 180, 40)
    encoded = io.BytesIO()
    Image.fromarray(image).save(encoded, format="PNG")
    boto3.client("s3", endpoint_url=s3_endpoint).put_object(
        Bucket=s3_bucket, Key="robot/cam0/000001.png", Body=encoded.getvalue()
    )
    session = InteractiveSession(ClassicalBackend(), load_taxonomy())
    client = TestClient(create_app(LabelStudioMLBackend(session, ImageFetcher(s3_endpoint_url=s3_endpoint))))

    def click(url: str):
        return client.post(
            "/predict",
            json={
                "tasks": [{"id": 4, "data": {"image": url}}],
                "label_config": labeling_config(load_taxonomy()),
                "params": {
                    "context": {
                        "result": [
                            {
                                "type": "keypointlabels",
                                "original_width": 120,
                                "original_height": 90,
                                "value": {"x": 50.0, "y": 50.0, "keypointlabels": ["container"]},
                            }
                        ]
                    }
                },
            },
        )

    answer = click(f"s3://{s3_bucket}/robot/cam0/000001.png")
    assert answer.status_code == 200, answer.text
    (result,) = answer.json()["results"][0]["result"]
    mask = brush_rle_to_mask(result["value"]["rle"], 90, 120)
    truth = np.zeros((90, 120), bool)
    truth[30:60, 40:80] = True
    assert (mask & truth).sum() / (mask | truth).sum() > 0.8
    missing = click(f"s3://{s3_bucket}/robot/cam0/missing.png")
    assert missing.status_code == 404 and "no such object" in missing.json()["error"]

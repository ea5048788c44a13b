"""Faults mid-run: SIGKILL during writes, an S3 outage during a run, planted secrets, idempotent re-runs.

Counts for the closing figures: each test names what it injects; bytes lost must be 0.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from conftest import S3_ENV, copy_upload, demo_corpus
from dagster import DagsterInstance, EnvVar, materialize
from dagster._serdes import serialize_value

from assets import capture_batches, raw_captures
from assets.raw_captures import captures_table_expectations, quarantine_share_under_limit
from dataset_pipeline import dataset_release as release
from dataset_pipeline.captures import captures_key
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.taxonomy import load_taxonomy
from resources import CaptureRules, DatasetStoreResource

ROOT = Path(__file__).resolve().parent.parent


def _checksums(store: DatasetStore, prefix: str) -> dict[str, str]:
    return {k: hashlib.sha256(store.read_bytes(k)).hexdigest() for k in store.list(prefix, recursive=True)}


def _spawn(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT)


def _wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the condition was not reached")
        time.sleep(0.02)


def test_sigkill_while_a_table_is_written_leaves_the_old_or_the_new_file_never_a_part(local_store):
    """5 kills of a process rewriting one 8 MiB file: the key always holds a complete version."""
    versions = {hashlib.sha256(bytes([v]) * (8 * 2**20)).hexdigest() for v in range(256)}
    key = "tables/captures/killed.parquet"
    for kill in range(5):
        child = _spawn(
            f"""
            from dataset_pipeline.store import DatasetStore
            store = DatasetStore({local_store.root!r})
            for round in range(10_000):
                store.write_bytes({key!r}, bytes([round % 256]) * (8 * 2**20))
            """
        )
        time.sleep(0.4 + 0.15 * kill)
        child.send_signal(signal.SIGKILL)
        child.wait()
        if local_store.exists(key):
            assert hashlib.sha256(local_store.read_bytes(key)).hexdigest() in versions
        assert local_store.list("tables/captures") in ([], [key])  # a leftover .tmp-*.part is never listed


def test_sigkill_during_a_release_then_a_rerun_completes_and_raw_files_are_untouched(tmp_path):
    store = DatasetStore(str(tmp_path / "store"))
    images, annotations, splits = demo_corpus(store, "kill-b1", 16)
    raw_before = _checksums(store, "incoming")
    for name, frame in (("images", images), ("annotations", annotations), ("splits", splits)):
        store.write_parquet(f"tables/fault/{name}.parquet", frame)
    content = release.ReleaseContent(store, load_taxonomy(), images, annotations, splits)
    formats = list(release.DEFAULT_FORMATS)
    version = release.release_version(content, formats)
    child = _spawn(
        f"""
        from dataset_pipeline import dataset_release as release
        from dataset_pipeline.store import DatasetStore
        from dataset_pipeline.taxonomy import load_taxonomy
        store = DatasetStore({store.root!r})
        content = release.ReleaseContent(store, load_taxonomy(), *(store.read_parquet(f"tables/fault/{{n}}.parquet")
                                         for n in ("images", "annotations", "splits")))
        release.write_exports(content, {version!r}, {formats!r})
        """
    )
    folder = store.path(f"releases/{version}")
    _wait_for(lambda: os.path.isdir(os.path.join(folder, "labels")))  # images done, formats under way
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not store.exists(f"releases/{version}/exports.json")
    assert release.list_releases(store) == []  # never visible as complete
    outcome = release.write_exports(content, version, formats)  # the re-run
    assert not outcome.reused
    assert {f: release.validate_format(content, version, f) for f in formats} == {f: [] for f in formats}
    assert _checksums(store, "incoming") == raw_before


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_s3_outage_fails_the_step_clearly_and_the_retry_policy_finishes_the_run(demo_batch, monkeypatch):
    """The S3 server is down when the run starts and comes back 4 s later: the first attempts fail
    with a StoreError naming the URL, RetryPolicy (2 s, exponential) retries, and the run completes
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
            instance.add_dynamic_partitions(capture_batches.name, [upload.batch])
            result = materialize(
                [raw_captures, captures_table_expectations, quarantine_share_under_limit],
                partition_key=upload.batch,
                instance=instance,
                resources={"dataset_store": resource, "capture_rules": CaptureRules()},
                raise_on_error=False,
            )
            events = result.all_events
            retries = [e for e in events if e.event_type_value == "STEP_UP_FOR_RETRY"]
            retried = serialize_value(retries[0]) if retries else ""
        assert result.success
        assert retries, "the step failed at least once during the outage and was retried"
        assert f"s3://outage/store/incoming/{upload.batch}/manifest.csv: cannot reach the store" in retried
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
            instance.add_dynamic_partitions(capture_batches.name, [upload.batch])
            result = materialize(
                [raw_captures, captures_table_expectations, quarantine_share_under_limit],
                partition_key=upload.batch,
                instance=instance,
                resources={"dataset_store": resource, "capture_rules": CaptureRules()},
                raise_on_error=False,
            )
            assert result.success is ("no-such" not in root)
            seen += [serialize_value(record) for record in instance.all_logs(result.run_id)]
            seen.append(serialize_value(instance.get_run_by_id(result.run_id)))
    captured = capfd.readouterr()
    seen += [captured.out, captured.err]
    assert any("no-such-bucket-for-secrets" in text for text in seen)  # the failure is in the logs...
    assert not [text for text in seen if key_id in text or secret in text]  # ...the secrets are not

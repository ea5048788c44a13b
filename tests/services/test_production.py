"""The production profile against the real services of this machine kind: PostgreSQL on
127.0.0.1:5432 (dagster-postgres), S3 compute logs (moto), Celery workers on the local RabbitMQ.

These tests need the services; when one is absent they skip naming it (and fail with
DATASET_PIPELINE_REQUIRE_SERVICES=1, as `.ci/run` runs them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from dagster import AssetCheckKey, AssetKey, DagsterInstance

from tests.conftest import copy_upload, demo_command, start_celery_worker, stop_process_group

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
GPU_ASSETS = {
    "sam2_premasks",
    "episode_propagation",
    "baseline_model",
    "zero_shot_comparison",
    "active_learning_queue",
}


@pytest.fixture
def production_env(tmp_path, postgres_db, s3_endpoint, monkeypatch):
    """DAGSTER_HOME with dagster.prod.yaml as its dagster.yaml, and the environment it reads."""
    import boto3

    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.prod.yaml", home / "dagster.yaml")
    bucket = f"logs-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    env = {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": "5432",
        "DAGSTER_PG_USERNAME": "postgres",
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_DB": postgres_db,
        "DAGSTER_COMPUTE_LOGS_BUCKET": bucket,
        "DAGSTER_COMPUTE_LOGS_PREFIX": "compute-logs",
        "AWS_ENDPOINT_URL": s3_endpoint,
        "DATASET_PIPELINE_STORE": str(tmp_path / "store"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # as docs/deploy.md says to (`dagster instance concurrency set gpu <GPUs>`): otherwise the first
    # two runs that reach a GPU step at once both create the pool's row, and one of them fails
    with DagsterInstance.get() as instance:
        instance.event_log_storage.set_concurrency_slots("gpu", 1)
    return {**os.environ, **env}, bucket


def _add_partitions(*batches: str) -> None:
    with DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("capture_batches", list(batches))


def _materialize_batch(env: dict, batch: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            str(BIN / "dagster"),
            "asset",
            "materialize",
            "-m",
            "dataset_pipeline.definitions",
            "--select",
            "raw_captures,sam2_premasks,annotation_tasks",
            "--partition",
            batch,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_the_demo_graph_runs_on_postgres_and_celery_workers_beside_a_concurrent_batch(
    production_env, rabbitmq, demo_batch, s3_endpoint, tmp_path
):
    """The README demo (all 30 stages) in the production profile: its instance on PostgreSQL, compute logs
    on S3, every step executed by Celery workers - a `gpu` worker and a `cpu` worker, solo pools, so a step
    runs in the worker's own process - while a second process materializes another batch (multiprocess
    executor). Both complete; everything reads back from Postgres; the event log shows each of the demo's
    GPU asset steps in the GPU worker and every other step in the CPU one. (One demo for the three: each took 3.5-6 minutes on its own.)"""
    import boto3
    import psycopg2

    from dataset_pipeline.store import DatasetStore

    env, bucket = production_env
    from dataset_pipeline.demo.review import ANNOTATORS

    # The workers load the code location from their own environment: they get the demo's team
    # roster as the demo sets it for itself (docs/deploy.md: workers need the same environment).
    roster = ",".join(a.annotator_id for a in ANNOTATORS)
    env = {**env, "DATASET_PIPELINE_EXECUTOR": "celery", "DATASET_PIPELINE_ANNOTATORS": roster}
    store_dir = Path(env["DATASET_PIPELINE_STORE"])
    source, upload = demo_batch
    copy_upload(source, upload.batch, DatasetStore(str(store_dir)), "pg-b2")
    _add_partitions("pg-b2")
    subprocess.run(
        [str(BIN / "celery"), "-A", "dagster_celery.app", "purge", "-f", "-Q", "gpu,cpu,dagster"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
    )
    gpu = start_celery_worker(env, "gpu", "gpu", tmp_path / "gpu.log")
    cpu = start_celery_worker(env, "cpu,dagster", "cpu", tmp_path / "cpu.log")
    try:
        demo = subprocess.Popen(
            demo_command(store_dir, env["DAGSTER_HOME"]),
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        time.sleep(5)  # the second batch starts while the demo's first stages run
        # in its own process with the multiprocess executor: its steps' compute logs go to S3 from there
        second = _materialize_batch(  # another team's batch: no roster, no place in the demo's rotation
            {
                k: v
                for k, v in env.items()
                if k not in ("DATASET_PIPELINE_EXECUTOR", "DATASET_PIPELINE_ANNOTATORS")
            },
            "pg-b2",
        )
        second_out, _ = second.communicate(timeout=900)
        demo_out, _ = demo.communicate(timeout=1500)
        assert second.returncode == 0, second_out[-3000:]
        assert demo.returncode == 0, _stages_and_failures(demo_out)
        assert "dataset_card: ok" in demo_out
        with DagsterInstance.get() as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.compute_log_manager).__name__ == "S3ComputeLogManager"
            runs = instance.get_runs()
            assert runs and all(r.is_success for r in runs), [
                (r.run_id, r.status) for r in runs if not r.is_success
            ]
            assert {"demo-s0-n120", "pg-b2"} <= instance.get_materialized_partitions(AssetKey("raw_captures"))
            for asset in (
                "annotation_corpus",
                "dataset_splits",
                "baseline_model",
                "dataset_release",
                "dataset_card",
            ):
                assert instance.get_latest_materialization_event(AssetKey(asset)) is not None, asset
            history = instance.event_log_storage.get_asset_check_execution_history(
                AssetCheckKey(AssetKey("dataset_release"), "coco_reloads"), limit=5
            )
            assert history and history[0].status.value == "SUCCEEDED"
            started: dict[str, set] = {}
            for run in (r for r in runs if r.tags.get("dagster/partition") != "pg-b2"):
                for record in instance.all_logs(run.run_id):
                    event = record.dagster_event
                    if event and event.event_type_value == "STEP_START":
                        started.setdefault(record.step_key, set()).add(event.pid)
    finally:
        stop_process_group(gpu)
        stop_process_group(cpu)
    assert gpu.poll() is not None and cpu.poll() is not None  # stopped by their PIDs
    assert GPU_ASSETS <= set(started)
    for step, pids in started.items():
        assert pids == ({gpu.pid} if step in GPU_ASSETS else {cpu.pid}), step
    with psycopg2.connect(host="127.0.0.1", user="postgres", dbname=env["DAGSTER_PG_DB"]) as connection:
        cursor = connection.cursor()
        cursor.execute("SELECT count(*) FROM runs")
        assert cursor.fetchone()[0] == len(runs)
        cursor.execute("SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'")
        assert cursor.fetchone()[0] >= 16
    logs = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket=bucket, Prefix="compute-logs")
    assert logs.get("KeyCount", 0) > 0


def _stages_and_failures(output: str) -> str:
    """The demo's stage lines and what failed, for an assertion message (its path list is long)."""
    lines = [
        line for line in output.splitlines() if line.startswith("[") or "FAILED" in line or "rror" in line
    ]
    return "\n".join(lines)[-4000:]

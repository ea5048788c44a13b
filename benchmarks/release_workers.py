"""The full release on Celery workers: wall time of ``dataset_release`` (planning, its export
shards fanned out, assembly, and the reload checks) with 1 and with 2 workers, in the same session.

Data: ``--batches`` demo batches of ``--per-batch`` images each (640x480, ``dataset_pipeline.demo``,
episodes of 4 frames, one seed per batch), the demo's ground truth as the labels, taken through
``annotation_corpus``, ``quality_report``, ``agreement_report`` and ``dataset_splits`` as the
pipeline does; prepared once, then copied into a fresh store for each run (no earlier release
to reuse). Each run: the production profile's PostgreSQL instance (a fresh database), the
Celery executor on the local RabbitMQ, ``--workers`` workers of queues ``cpu,dagster`` with solo
pools (a step runs in the worker's own process, one at a time), and
``dagster asset materialize --select dataset_release`` timed from launch to exit. The release
formats are every one but ``rlds`` (its writer runs in ``.tfds-venv`` through Dagster Pipes), and
``export_threads`` is 1, so that a worker uses one core and the executor's spread is what is
measured.

    .venv/bin/python benchmarks/release_workers.py --batches 4 --per-batch 500 --workers 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
INSTANCE = """
telemetry:
  enabled: false
storage:
  postgres:
    postgres_db:
      hostname: 127.0.0.1
      port: 5432
      username: postgres
      password: ""
      db_name: {db}
      scheme: postgresql+psycopg2
"""


def prepare(work: Path, batches: int, per_batch: int) -> Path:
    """A store whose corpus stages are done: the release's inputs."""
    from dataset_pipeline import layout
    from dataset_pipeline.agreement_report import update_agreement
    from dataset_pipeline.annotation_corpus import update_corpus
    from dataset_pipeline.dataset_splits import update_splits, write_splits
    from dataset_pipeline.demo import ground_truth_annotations, write_demo_upload
    from dataset_pipeline.quality_report import update_report
    from dataset_pipeline.raw_captures import ingest_batch
    from dataset_pipeline.store import DatasetStore
    from dataset_pipeline.taxonomy import load_taxonomy

    root = work / "prepared"
    marker = work / "prepared.json"
    plan = {"batches": batches, "per_batch": per_batch}
    if marker.exists() and json.loads(marker.read_text()) == plan:
        return root
    shutil.rmtree(work, ignore_errors=True)
    store = DatasetStore(str(root))
    for b in range(batches):
        name = f"rw{b:03d}"
        upload = write_demo_upload(store, name, n_images=per_batch, seed=b, frames_per_episode=4)
        store.write_parquet(layout.captures_key(name), ingest_batch(store, name).captures)
        truth = ground_truth_annotations(store.read_parquet(upload.ground_truth_key))
        store.write_parquet(layout.annotations_key(name), truth)
    taxonomy = load_taxonomy()
    update_corpus(store)
    update_report(store, taxonomy)
    update_agreement(store, taxonomy)
    write_splits(store, update_splits(store, taxonomy))
    marker.write_text(json.dumps(plan))
    return root


def run(work: Path, prepared: Path, workers: int, formats: list[str]) -> dict:
    """One full release of a fresh copy of the prepared store on ``workers`` Celery workers."""
    import psycopg2

    from dataset_pipeline import layout
    from dataset_pipeline.store import DatasetStore
    from tests.conftest import start_celery_worker, stop_process_group

    label = f"w{workers}-{uuid.uuid4().hex[:6]}"
    store_dir, home = work / f"store-{label}", work / f"home-{label}"
    shutil.copytree(prepared, store_dir)
    home.mkdir()
    db = f"dp_bench_{label.replace('-', '_')}"
    (home / "dagster.yaml").write_text(INSTANCE.format(db=db))
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {db}")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DATASET_PIPELINE_STORE": str(store_dir),
        "DATASET_PIPELINE_EXECUTOR": "celery",
    }
    purge = [str(BIN / "celery"), "-A", "dagster_celery.app", "purge", "-f", "-Q", "cpu,dagster"]
    subprocess.run(purge, cwd=ROOT, env=env, capture_output=True, timeout=60)
    pool = [
        start_celery_worker(env, "cpu,dagster", f"{label}-{k}", home / f"worker-{k}.log")
        for k in range(workers)
    ]
    config = {"resources": {"release_settings": {"config": {"export_threads": 1, "formats": formats}}}}
    try:
        time.sleep(10)  # the workers connect and load the code location
        started = time.perf_counter()
        done = subprocess.run(
            [str(BIN / "dagster"), "asset", "materialize", "-m", "dataset_pipeline.definitions"]
            + ["--select", "dataset_release", "--config-json", json.dumps(config)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=3600,
        )
        seconds = time.perf_counter() - started
    finally:
        for process in pool:
            stop_process_group(process, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(
            f"release on {workers} workers failed:\n{done.stdout[-4000:]}{done.stderr[-4000:]}"
        )
    steps: dict[str, int] = {}
    busy: dict[str, float] = {}  # seconds of steps each worker ran: how evenly the work spread
    for k in range(workers):
        log = (home / f"worker-{k}.log").read_text()
        steps[f"worker-{k}"] = log.count("succeeded in")
        busy[f"worker-{k}"] = round(sum(float(t) for t in re.findall(r"succeeded in ([0-9.]+)s", log)), 1)
    store = DatasetStore(str(store_dir))
    assembled = [
        k for k in store.list("releases", recursive=True) if k.endswith(f"/{layout.RELEASE_EXPORTS_FILE}")
    ]
    if len(assembled) != 1:
        raise RuntimeError(f"release on {workers} workers: {len(assembled)} assembled releases, not 1")
    version = assembled[0].split("/")[1]
    shards = len(store.list(layout.join_key(layout.RELEASE_PARTS, version), recursive=True))
    shutil.rmtree(store_dir)
    admin.cursor().execute(f"DROP DATABASE {db} WITH (FORCE)")
    return {
        "workers": workers,
        "seconds": round(seconds, 1),
        "steps_per_worker": steps,
        "busy_seconds_per_worker": busy,
        "index_parts": shards,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--per-batch", type=int, default=500)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--work", type=Path, default=Path("/tmp/dp-release-workers"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "release_workers.json")
    args = parser.parse_args()

    from dataset_pipeline.dataset_release import DEFAULT_FORMATS

    started = time.perf_counter()
    prepared = prepare(args.work, args.batches, args.per_batch)
    print(f"prepared in {time.perf_counter() - started:.0f} s", flush=True)
    formats = [f for f in DEFAULT_FORMATS if f != "rlds"]
    runs = []
    for workers in args.workers:
        runs.append(run(args.work, prepared, workers, formats))
        print(json.dumps(runs[-1]), flush=True)
    by_workers = {r["workers"]: r["seconds"] for r in runs}
    summary = {
        "images": args.batches * args.per_batch,
        "formats": formats,
        "cpus": os.cpu_count(),
        "runs": runs,
        "speedup_2_vs_1": round(by_workers[1] / by_workers[2], 2) if {1, 2} <= set(by_workers) else None,
    }
    args.out.write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()

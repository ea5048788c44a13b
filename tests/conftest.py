"""Fixtures of every lane: local stores, small demo batches, and how a lane meets a missing service.

The lanes: ``unit/`` (no Dagster instance, no services), ``dagster/`` (in-process materializations,
sensors, the CLI's runs), ``services/`` (PostgreSQL, RabbitMQ and Celery, Label Studio, an S3
server), ``robot_datasets/`` (datasets written by lerobot and tensorflow-datasets in their own
environments, which count as services here). ``pytest -q`` runs all four; a service (or venv) that is not there skips its tests with one line
naming it and how to start it, unless ``DATASET_PIPELINE_REQUIRE_SERVICES=1`` (CI), which fails them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from dataset_pipeline.demo import DemoUpload, ground_truth_annotations, write_demo_upload
from dataset_pipeline.raw_captures import ingest_batch
from dataset_pipeline.store import DatasetStore

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
REQUIRE_SERVICES = "DATASET_PIPELINE_REQUIRE_SERVICES"


def require_service(available: bool, service: str, how_to_start: str) -> None:
    """Go on when ``available``; else skip the test naming the service and how to start it, or fail
    it when ``DATASET_PIPELINE_REQUIRE_SERVICES=1`` (CI must not pass by skipping)."""
    if available:
        return
    message = f"{service} is not available: {how_to_start}"
    if os.environ.get(REQUIRE_SERVICES) == "1":
        pytest.fail(f"{message} ({REQUIRE_SERVICES}=1)")
    pytest.skip(message)


def require_environment(name: str) -> None:
    """The lerobot or tensorflow-datasets venv a test needs, met like a service."""
    from dataset_pipeline.formats.environments import ENVIRONMENTS, is_available

    require_service(
        is_available(name),
        f"the {name} environment ({ENVIRONMENTS[name][1]})",
        "make it with `bash scripts/robot_envs.sh`",
    )


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex((host, port)) == 0


@pytest.fixture
def local_store(tmp_path: Path) -> DatasetStore:
    return DatasetStore(str(tmp_path / "store"))


@pytest.fixture
def any_store(local_store: DatasetStore) -> DatasetStore:
    """The store a test runs against: a local folder here; ``services/test_s3.py`` runs the same
    tests again with an S3 store."""
    return local_store


@pytest.fixture(scope="session")
def demo_batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[DatasetStore, DemoUpload]:
    """A small demo upload (16 images, every scene kind) in a local store, shared read-only."""
    store = DatasetStore(str(tmp_path_factory.mktemp("demo") / "store"))
    return store, write_demo_upload(store, "demo-b1", n_images=16, seed=3, frames_per_episode=4)


def copy_upload(source: DatasetStore, batch: str, target: DatasetStore, new_batch: str | None = None) -> str:
    """Copy a batch's raw upload between stores (tests plant defects in the copy, never the original)."""
    new_batch = new_batch or batch
    prefix = f"incoming/{batch}/"
    keys = source.list(prefix, recursive=True)
    for key in sorted(keys, key=lambda k: k.endswith("manifest.csv")):  # manifest last, as uploads do
        target.put_upload(f"incoming/{new_batch}/{key[len(prefix) :]}", source.read_bytes(key))
    return new_batch


def copy_store(source: DatasetStore, target: DatasetStore) -> DatasetStore:
    """Every file of ``source`` into ``target``, raw files (uploads, reviews) as the create-only uploads
    they are: a test that writes into a shared fixture's store works on its copy."""
    from dataset_pipeline.layout import RAW_PREFIXES

    for key in source.list("", recursive=True):
        data = source.read_bytes(key)
        (target.put_upload if key.startswith(RAW_PREFIXES) else target.write_bytes)(key, data)
    return target


def copy_upload_without_prompts(source: DatasetStore, batch: str, target: DatasetStore) -> None:
    """The demo upload as a user without a detector uploads it: every file but ``prompts.csv``."""
    for key in source.list(f"incoming/{batch}", recursive=True):
        if not key.endswith("prompts.csv"):
            target.put_upload(key, source.read_bytes(key))


def demo_command(store: str | Path, dagster_home: str | Path) -> list[str]:
    """The README's demo (120 images, seed 0) as a command line, with one training epoch to keep
    it short: ``dataset-pipeline demo`` of this venv, writing to ``store`` and ``dagster_home``."""
    cli = Path(sys.executable).with_name("dataset-pipeline")
    return [str(cli), "demo", "--images", "120", "--seed", "0", "--epochs", "1", "--out", str(store),
            "--dagster-home", str(dagster_home)]  # fmt: skip


def demo_corpus(
    store: DatasetStore, batch: str, n_images: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Captures, the demo's ground truth as annotations, and a scene-wise split of a fresh demo upload
    (for the stages after review, without simulating review)."""
    upload = write_demo_upload(store, batch, n_images=n_images, seed=3, frames_per_episode=4)
    images = ingest_batch(store, batch).captures
    annotations = ground_truth_annotations(store.read_parquet(upload.ground_truth_key))
    scenes = sorted(images.scene_id.unique())
    split_of = {scene: ("train", "val", "test")[i % 3] for i, scene in enumerate(scenes)}
    return images, annotations, images[["image_id"]].assign(split=images.scene_id.map(split_of))


def reviewed_demo(store: DatasetStore, batch: str, n_images: int, seed: int = 0):  # -> Corpus
    """A demo batch taken through the domain's stages up to its corpus: ingested, pre-masked
    (classical backend), reviewed by the simulated annotators and imported."""
    from dataset_pipeline import layout
    from dataset_pipeline.annotation_corpus import build_corpus
    from dataset_pipeline.demo import simulate_review
    from dataset_pipeline.reviewed_annotations import import_batch_reviews
    from dataset_pipeline.sam2_premasks import premask_batch
    from dataset_pipeline.sam2_premasks.classical import ClassicalBackend
    from dataset_pipeline.taxonomy import load_taxonomy

    taxonomy = load_taxonomy()
    write_demo_upload(store, batch, n_images=n_images, seed=seed)
    store.write_parquet(layout.captures_key(batch), ingest_batch(store, batch).captures)
    premasks = premask_batch(store, batch, ClassicalBackend(), taxonomy=taxonomy).table
    store.write_parquet(layout.premasks_key(batch), premasks)
    simulate_review(store, batch, seed=seed)
    annotations = import_batch_reviews(store, batch, taxonomy).annotations
    store.write_parquet(layout.annotations_key(batch), annotations)
    return build_corpus(store)


@pytest.fixture(scope="session")
def reviewed_b48(tmp_path_factory: pytest.TempPathFactory):  # -> (DatasetStore, Corpus)
    """A 48-image demo batch through pre-masks, the simulated annotators and the importers."""
    store = DatasetStore(str(tmp_path_factory.mktemp("reviewed") / "store"))
    return store, reviewed_demo(store, "b48", n_images=48)


def stage_assets(names: tuple[str, ...] | list[str]) -> list:
    """The code location's asset definitions of these keys, in pipeline order (for ``materialize``)."""
    from assets import ALL_ASSETS

    return [a for a in ALL_ASSETS if a.key.to_user_string() in names]


def strict_taxonomy(folder: Path) -> Path:
    """The packaged taxonomy asking 0.90 IoU on the gripper (the demo's annotators reach about 0.8
    on 60 images): a demo on it stops at the blocking agreement gate, as a team's stricter rules would."""
    import dataset_pipeline

    packaged = (Path(dataset_pipeline.__file__).parent / "taxonomies" / "tabletop_v1.yaml").read_text()
    gripper = "    name: gripper\n    category: thin\n"
    assert gripper in packaged
    path = folder / "strict.yaml"
    path.write_text(packaged.replace(gripper, gripper + "    agreement_threshold: 0.90\n"))
    return path


def start_celery_worker(env: dict, queues: str, name: str, log: Path) -> subprocess.Popen:
    """A Celery worker of this venv for the code location's executor (``dagster_celery.app``) on
    ``queues``, solo pool (a step runs in the worker's own process, one at a time), in a session of
    its own (:func:`stop_process_group` ends it), logging to ``log``."""
    command = [str(Path(sys.executable).parent / "celery"), "-A", "dagster_celery.app", "worker"]
    command += ["-Q", queues, "--pool", "solo", "-n", f"{name}@%h", "--loglevel", "INFO"]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )


def stop_process_group(process: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM the process's group, SIGKILL it when it has not ended within ``timeout`` seconds."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

"""Shared fixtures: local and S3 (moto server on 127.0.0.1) stores, and small demo batches."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from dataset_pipeline.captures import ingest_batch
from dataset_pipeline.demo import DemoUpload, ground_truth_annotations, write_demo_upload
from dataset_pipeline.store import DatasetStore

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing-key",
    "AWS_SECRET_ACCESS_KEY": "testing-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server in this process on a free port of 127.0.0.1; stopped at the end."""
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in S3_ENV}
    os.environ.update(S3_ENV)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A fresh, empty bucket; returns its name."""
    import boto3

    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_store(s3_endpoint: str, s3_bucket: str) -> DatasetStore:
    return DatasetStore(f"s3://{s3_bucket}/segmentation", {"endpoint_url": s3_endpoint})


@pytest.fixture
def local_store(tmp_path: Path) -> DatasetStore:
    return DatasetStore(str(tmp_path / "store"))


@pytest.fixture(params=["local", "s3"])
def any_store(request: pytest.FixtureRequest) -> DatasetStore:
    """The same test on a local folder and on S3."""
    return request.getfixturevalue(f"{request.param}_store")


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

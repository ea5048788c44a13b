"""The services lane's servers: an S3 server (moto, in this process), the machine's PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from dataset_pipeline.store import DatasetStore
from tests.conftest import port_open, require_service

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
def postgres_db() -> Iterator[str]:
    """A fresh database in the local PostgreSQL (trust auth), dropped afterwards."""
    import psycopg2

    require_service(
        port_open(5432),
        "PostgreSQL on 127.0.0.1:5432",
        "start it (e.g. `service postgresql start`; trust auth for user postgres)",
    )
    name = f"dp_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.fixture
def rabbitmq() -> str:
    """The broker URL of the local RabbitMQ (guest/guest)."""
    require_service(
        port_open(5672), "RabbitMQ on 127.0.0.1:5672", "start it (e.g. `service rabbitmq-server start`)"
    )
    return "pyamqp://guest@127.0.0.1:5672//"

"""The dataset store as a Dagster resource: configuration in, a :class:`DatasetStore` out."""

from __future__ import annotations

import json
from typing import Any

from dagster import (
    ConfigurableIOManager,
    ConfigurableResource,
    InputContext,
    OutputContext,
)
from pydantic import Field, PrivateAttr

from dataset_pipeline.layout import DAGSTER_IO, join_key
from dataset_pipeline.store import DatasetStore, StoreConfig


class DatasetStoreResource(ConfigurableResource):
    """Where every file of the pipeline lives: a local folder or ``s3://bucket/prefix``.

    Credentials and the endpoint may be left unset: s3fs (botocore) then reads the
    standard AWS environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL,
    AWS_PROFILE...). Set them here with ``dagster.EnvVar`` so that they are never shown
    in the UI or the logs.
    """

    root_url: str = Field(default="data", description="Local folder or s3://bucket/prefix")
    endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint (MinIO, moto...)")
    aws_access_key_id: str | None = Field(default=None, description="Use dagster.EnvVar")
    aws_secret_access_key: str | None = Field(default=None, description="Use dagster.EnvVar")
    region_name: str | None = None
    connect_timeout_s: float | None = Field(
        default=None, description="S3 connect timeout; unset = botocore's 60 s"
    )
    max_attempts: int | None = Field(
        default=None,
        description="botocore attempts per S3 call; unset = its default. Outages longer than that are "
        "for the steps' retries on store outages (assets/execution.py) to ride out",
    )

    _store: DatasetStore | None = PrivateAttr(default=None)

    def config(self) -> StoreConfig:
        return StoreConfig(
            root_url=self.root_url,
            endpoint_url=self.endpoint_url,
            key=self.aws_access_key_id,
            secret=self.aws_secret_access_key,
            region_name=self.region_name,
            connect_timeout_s=self.connect_timeout_s,
            max_attempts=self.max_attempts,
        )

    def storage_options(self) -> dict[str, Any]:
        return self.config().storage_options()

    def get_store(self) -> DatasetStore:
        if self._store is None:
            self._store = self.config().open()
        return self._store


class StoreIOManager(ConfigurableIOManager):
    """Passes a step's small outputs (the release's shard list and their counts) through the
    dataset store as JSON, under ``tables/dagster_io/<run>/<step>/<output>``: every executor's
    workers see the store (a local folder or S3), where Dagster's default IO manager writes to the
    step machine's own disk."""

    dataset_store: DatasetStoreResource

    def _key(self, context) -> str:
        return join_key(DAGSTER_IO, *context.get_identifier()) + ".json"

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        self.dataset_store.get_store().write_bytes(self._key(context), json.dumps(obj).encode())

    def load_input(self, context: InputContext) -> Any:
        return json.loads(self.dataset_store.get_store().read_bytes(self._key(context.upstream_output)))

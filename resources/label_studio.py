"""The live Label Studio connector as a Dagster resource (off unless enabled)."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field


class LabelStudioResource(ConfigurableResource):
    """A Label Studio server that annotation_tasks pushes to and the review sensor pulls from.

    Give ``api_token`` as ``dagster.EnvVar("DATASET_PIPELINE_LABEL_STUDIO_TOKEN")``: it is never
    shown in the UI, the logs or an error. Images are referenced as the ``annotation_tools``
    resource says (Label Studio local-files serving under its document root, the store's URLs,
    or a base URL).
    """

    enabled: bool = Field(default=False, description="Push tasks and pull reviews over the API")
    url: str = Field(default="http://127.0.0.1:8080", description="Label Studio base URL")
    api_token: str | None = Field(default=None, description="Use dagster.EnvVar")
    project_prefix: str = Field(
        default="dataset_pipeline",
        description="Project title = '<prefix> <taxonomy tag>': one per taxonomy version",
    )
    timeout_s: float = 60.0

    def client(self):  # -> dataset_pipeline.formats.label_studio.client.LabelStudioClient
        from dataset_pipeline.formats.label_studio.client import LabelStudioClient, LabelStudioError

        if not self.api_token:
            raise LabelStudioError(
                f"Label Studio at {self.url}: no API token configured (set DATASET_PIPELINE_LABEL_STUDIO_TOKEN)"
            )
        return LabelStudioClient(self.url, self.api_token, self.timeout_s)

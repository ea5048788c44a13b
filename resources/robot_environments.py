"""The environments of lerobot and tensorflow-datasets, reached from an asset through Dagster Pipes."""

from __future__ import annotations

from typing import Any

from dagster import ConfigurableResource, PipesSubprocessClient

from dataset_pipeline.formats.robot_dataset import RobotDatasetError
from dataset_pipeline.formats.worker_protocol import Launcher


class RobotEnvironments(ConfigurableResource):
    """Runs a format's worker (``formats/*/worker.py``) in its environment as a Pipes subprocess:
    its log lines reach the run's logs and its result comes back as a Pipes message."""

    def launcher(self, context: Any) -> Launcher:
        client = PipesSubprocessClient()

        def launch(command: list[str], env: dict[str, str]) -> dict:
            import os

            invocation = client.run(command=command, context=context, env={**os.environ, **env})
            messages = invocation.get_custom_messages()
            if not messages:
                raise RobotDatasetError(
                    f"{command[2]} {command[3]!r} reported no result through Dagster Pipes"
                )
            return dict(messages[-1])

        return launch

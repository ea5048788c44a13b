"""The environments of lerobot and tensorflow-datasets, reached from an asset through Dagster Pipes."""

from __future__ import annotations

from typing import Any

from dagster import ConfigurableResource, PipesSubprocessClient

from dataset_pipeline.formats.robot_dataset import Launcher


class RobotEnvironments(ConfigurableResource):
    """Runs a robot-dataset worker (``robot_workers/``) in its environment as a Dagster Pipes
    subprocess of the step: its log lines reach the run's log and its result a Pipes message (the
    domain reads the same result from the worker's result file)."""

    def launcher(self, context: Any) -> Launcher:
        client = PipesSubprocessClient()

        def launch(command: list[str], env: dict[str, str]) -> None:
            import os

            client.run(command=command, context=context, env={**os.environ, **env})

        return launch

"""The libraries whose pins fight the project's, each in its own environment, and how to run there.

lerobot 0.4.4 pins torch 2.10 (the project runs 2.14); tensorflow-cpu pins protobuf and h5py.
Each lives in a venv that ``scripts/robot_envs.sh`` makes (``.lerobot-venv``, ``.tfds-venv``
beside the project, or the Python an environment variable names). Its worker, a module of the
``robot_workers`` package (which imports nothing of ``dataset_pipeline``), is run there: it reads
one JSON request file and writes one JSON result file (``robot_workers/protocol.py``).
The domain calls :func:`run_worker`; an asset passes a ``launcher`` that runs the same command
through Dagster Pipes so the step's logs and result reach the UI.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from dataset_pipeline.formats.robot_dataset import Launcher, RobotDatasetError

#: name -> (environment variable naming its Python, venv folder beside the project)
ENVIRONMENTS: dict[str, tuple[str, str]] = {
    "lerobot": ("DATASET_PIPELINE_LEROBOT_PYTHON", ".lerobot-venv"),
    "tfds": ("DATASET_PIPELINE_TFDS_PYTHON", ".tfds-venv"),
}


class EnvironmentMissing(RobotDatasetError):
    """The environment a step needs was not made."""


def project_root() -> Path:
    return Path(__file__).resolve().parents[2]


def python_of(name: str) -> str:
    variable, folder = ENVIRONMENTS[name]
    configured = os.environ.get(variable)
    candidate = Path(configured) if configured else project_root() / folder / "bin" / "python"
    if not candidate.exists():
        raise EnvironmentMissing(
            f"the {name} environment is not made ({candidate} does not exist): run "
            f"`bash scripts/robot_envs.sh`, or set {variable} to a Python that has it"
        )
    return str(candidate)


def is_available(name: str) -> bool:
    try:
        python_of(name)
    except EnvironmentMissing:
        return False
    return True


def subprocess_launcher(command: list[str], env: dict[str, str]) -> None:
    """Run the worker as a plain subprocess (the CLI, the release's exporters)."""
    completed = subprocess.run(
        command, env={**os.environ, **env}, capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        tail = "\n".join((completed.stderr or completed.stdout).strip().splitlines()[-6:])
        raise RobotDatasetError(f"{command[2]} {command[3]!r} failed (exit {completed.returncode}): {tail}")


#: The workers, by environment (modules of the ``robot_workers`` package beside ``dataset_pipeline``).
WORKERS: dict[str, str] = {"lerobot": "robot_workers.lerobot_worker", "tfds": "robot_workers.tfds_worker"}


def run_worker(environment: str, command: str, request: dict, *, launcher: Launcher | None = None) -> dict:
    """Run ``command`` of the environment's worker with ``request``; its result, or the
    :class:`RobotDatasetError` it reported (a refusal names dataset, episode, frame and field)."""
    python = python_of(environment)
    with tempfile.TemporaryDirectory(prefix="dp-worker-") as folder:
        request_file, result_file = Path(folder) / "request.json", Path(folder) / "result.json"
        request_file.write_text(json.dumps({**request, "result_file": str(result_file)}), encoding="utf-8")
        env = {
            "PYTHONNOUSERSITE": "1",
            "PYTHONPATH": str(project_root()),
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "HF_HUB_OFFLINE": "1",
        }
        (launcher or subprocess_launcher)(
            [python, "-m", WORKERS[environment], command, str(request_file)], env
        )
        if not result_file.exists():
            raise RobotDatasetError(f"{WORKERS[environment]} {command!r} wrote no result")
        result = json.loads(result_file.read_text(encoding="utf-8"))
    if not result.get("ok"):
        raise RobotDatasetError(str(result.get("error") or result))
    return result

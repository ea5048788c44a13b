"""The libraries whose pins fight the project's, each in its own environment, and how to run there.

lerobot 0.4.4 pins torch 2.10 (the project runs 2.14); tensorflow-cpu pins protobuf and h5py.
Each lives in a venv that ``scripts/robot_envs.sh`` makes (``.lerobot-venv``, ``.tfds-venv``
beside the project, or the Python an environment variable names). A format's ``worker.py`` is
run there as a script: it reads one JSON request file and answers one JSON result, printed
as its last line (``RESULT {...}``) and, under Dagster Pipes, reported as a custom message.
The domain calls :func:`run_worker`; an asset passes a ``launcher`` that runs the same command
through Dagster Pipes so the step's logs and result reach the UI.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from dataset_pipeline.formats.robot_dataset import RobotDatasetError
from dataset_pipeline.formats.worker_protocol import RESULT_PREFIX, Launcher

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


def parse_result(stdout: str) -> dict | None:
    """The worker's result: its last ``RESULT`` line."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    return None


def subprocess_launcher(command: list[str], env: dict[str, str]) -> dict:
    completed = subprocess.run(
        command, env={**os.environ, **env}, capture_output=True, text=True, check=False
    )
    result = parse_result(completed.stdout)
    if result is None:
        tail = "\n".join((completed.stderr or completed.stdout).strip().splitlines()[-6:])
        raise RobotDatasetError(f"{command[2]} {command[3]!r} failed (exit {completed.returncode}): {tail}")
    return result


def run_worker(
    environment: str, worker: str, command: str, request: dict, *, launcher: Launcher | None = None
) -> dict:
    """Run ``worker.py COMMAND`` in ``environment`` with ``request``; its result, or the
    :class:`RobotDatasetError` it reported (a refusal names dataset, episode, frame and field)."""
    python = python_of(environment)
    with tempfile.TemporaryDirectory(prefix="dp-worker-") as folder:
        request_file = Path(folder) / "request.json"
        request_file.write_text(json.dumps(request), encoding="utf-8")
        env = {
            "PYTHONNOUSERSITE": "1",
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "HF_HUB_OFFLINE": "1",
        }
        result = (launcher or subprocess_launcher)([python, "-m", worker, command, str(request_file)], env)
    if not result.get("ok"):
        raise RobotDatasetError(str(result.get("error") or result))
    return result

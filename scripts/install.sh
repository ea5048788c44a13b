#!/usr/bin/env bash
# Install dataset_pipeline into ./.venv on a fresh machine: torch first (from this machine
# kind's disk), then the project and its pinned dependencies (constraints.txt); then the
# robot-dataset libraries' own venvs (scripts/robot_envs.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/pip install --quiet -c constraints.txt torch==2.14.1 torchvision==0.29.1
# sam2 builds from source: without its CUDA extension (optional post-processing only),
# and without build isolation so that its setup sees the torch installed above.
SAM2_BUILD_CUDA=0 .venv/bin/pip install --quiet --no-build-isolation -c constraints.txt -e ".[dev]"
.venv/bin/python -c "import dataset_pipeline.definitions" && echo "installed: .venv/bin/dataset-pipeline"
# lerobot and tensorflow-datasets, each in its own venv (their pins fight ours): robot datasets in and out.
bash scripts/robot_envs.sh

#!/usr/bin/env bash
# The robot-dataset libraries whose pins fight the project's, each in its own venv beside it:
#   .lerobot-venv  lerobot 0.4.4 (the newest for Python 3.11; it pins torch 2.10, numpy 2.2)
#   .tfds-venv     tensorflow-datasets 4.9.10 + tensorflow-cpu 2.21 (protobuf >= 6.31, h5py < 3.15)
# Both get dagster-pipes (the steps that run there report through Dagster Pipes). The project's
# code reaches them through dataset_pipeline/formats/environments.py; DATASET_PIPELINE_LEROBOT_PYTHON
# and DATASET_PIPELINE_TFDS_PYTHON name other Pythons instead.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
make_env() {
  local folder=$1; shift
  if [ ! -x "$folder/bin/python" ]; then
    "$PYTHON" -m venv "$folder"
  fi
  "$folder/bin/pip" install --quiet "$@" dagster-pipes==1.13.27
}
make_env .lerobot-venv lerobot==0.4.4 &
lerobot=$!
# tensorflow-datasets imports importlib_resources without declaring it on Python 3.11.
make_env .tfds-venv tensorflow-cpu==2.21.0 tensorflow-datasets==4.9.10 importlib_resources &
tfds=$!
wait "$lerobot"
wait "$tfds"
.lerobot-venv/bin/python -c "import lerobot.datasets.lerobot_dataset" && echo "made: .lerobot-venv (lerobot 0.4.4)"
TF_CPP_MIN_LOG_LEVEL=3 .tfds-venv/bin/python -c "import tensorflow_datasets" && echo "made: .tfds-venv (tensorflow-datasets 4.9.10)"

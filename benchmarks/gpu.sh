#!/usr/bin/env bash
# Every GPU benchmark in one short command, for a lent GPU machine (minutes of device time):
#   PYTHON=python3 PYTHONPATH=<site with sam2, hydra, smp>:. bash benchmarks/gpu.sh OUT_DIR
# On a machine with only torch, copy the pure-Python packages this needs from .venv's
# site-packages into one folder (sam2, hydra, omegaconf, antlr4, iopath,
# segmentation_models_pytorch; for the detector transformers, tokenizers, huggingface_hub,
# safetensors) and put it first on PYTHONPATH. Figures: benchmarks/README.md,
# raw JSON of each run under benchmarks/results/.
# Each step has its own time limit so one failure leaves the others' figures.
set -u
cd "$(dirname "$0")/.."
OUT=${1:-benchmarks/out}
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
$PY -c "
from dataset_pipeline.sam2_premasks.sam2 import init_sam2_hydra
init_sam2_hydra()
import torch, sam2, segmentation_models_pytorch as smp
print('torch', torch.__version__, torch.cuda.get_device_name(), 'smp', smp.__version__)" 2>&1 | tee -a "$OUT/gpu.txt"
# correctness first: our SAM 2 path against sam2's predict_batch on mixed sizes and prompts
timeout 60 $PY scripts/gpu_check.py cuda 2>&1 | grep -v -i warn | tee "$OUT/gpu_check.json"
# SAM 2.1 hiera-t: our batched path and sam2's own predict_batch (the peer), same model, same process
timeout 200 $PY benchmarks/premask.py --backend sam2,sam2-reference --images 512 --batch 32 --repeats 3 \
  --json "$OUT/premask-sam2-b32.json" 2>&1 | grep -v Warning
timeout 60 $PY benchmarks/premask.py --backend sam2 --images 512 --batch 64 --repeats 3 \
  --json "$OUT/premask-sam2-b64.json" 2>&1 | grep -v Warning
# the stage's real output: every mask as its COCO RLE (found on the device), then with the encoder compiled
timeout 120 $PY benchmarks/premask.py --backend sam2 --images 512 --batch 32 --repeats 3 --to-rle \
  --json "$OUT/premask-sam2-b32-rle.json" 2>&1 | grep -v Warning
timeout 300 $PY benchmarks/premask.py --backend sam2 --images 512 --batch 32 --repeats 3 --to-rle \
  --compile max-autotune --json "$OUT/premask-sam2-b32-rle-compiled.json" 2>&1 | grep -v Warning
# interactive clicks (cached embedding vs embedding per click), detector + SAM 2, RLE on the device
timeout 150 $PY benchmarks/interactive.py --device cuda --backend sam2 --clicks 50 --images 64 --batch 16 \
  --rle-masks 1024 --json "$OUT/interactive-cuda.json" 2>&1 | grep -v Warning
# the classical fallback on the same machine's CPU, for the ratio
timeout 60 $PY benchmarks/premask.py --backend classical --images 48 --batch 4 --repeats 3 \
  --json "$OUT/premask-classical.json" 2>&1 | grep -v Warning
# baseline training step: DeepLabV3+ / MobileNetV2, 512 px, batch 16, bf16
timeout 90 $PY benchmarks/train.py --steps 20 --warmup 3 --json "$OUT/train.json" 2>&1 | grep -v Warning
timeout 60 $PY benchmarks/train.py --steps 10 --warmup 3 --batch 64 --json "$OUT/train-b64.json" 2>&1 | grep -v Warning
exit 0

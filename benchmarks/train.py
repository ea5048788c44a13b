"""Baseline training throughput: images/s of DeepLabV3+ / MobileNetV2 training steps.

Random images and labels at ``--size`` (512 by default), batch ``--batch`` (16), after
``--warmup`` steps; median seconds per step over ``--steps``. On CUDA: bf16 autocast and
channels-last, and the achieved TFLOP/s (FlopCounterMode on one step) against the card's
dense bf16 peak - the physical limit.

    .venv/bin/python benchmarks/train.py --steps 3 --warmup 1          # CPU here
    .venv/bin/python benchmarks/train.py --steps 20                    # GPU
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.premask import BF16_PEAK_TFLOPS  # noqa: E402
from dataset_pipeline.baseline_model import TrainConfig, build_model  # noqa: E402
from dataset_pipeline.sam2_premasks.sam2 import resolve_device  # noqa: E402


def main() -> None:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--encoder", default="mobilenet_v2")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", default=None, help="also write the result to this file")
    args = parser.parse_args()

    device = resolve_device(args.device)
    model = build_model(TrainConfig(encoder=args.encoder), 9).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device).contiguous(
        memory_format=torch.channels_last
    )
    y = torch.randint(0, 9, (args.batch, args.size, args.size), device=device)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.startswith("cuda")
        else contextlib.nullcontext()
    )

    def step() -> None:
        with autocast:
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    model.train()
    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    with FlopCounterMode(display=False) as counter:
        step()
    seconds = statistics.median(times)
    row = {
        "device": device if not device.startswith("cuda") else torch.cuda.get_device_name(),
        "encoder": args.encoder,
        "size": args.size,
        "batch": args.batch,
        "median_step_seconds": round(seconds, 3),
        "images_per_s": round(args.batch / seconds, 2),
        "step_gflop": round(counter.get_total_flops() / 1e9, 1),
        "achieved_tflops": round(counter.get_total_flops() / seconds / 1e12, 3),
        "torch_threads": torch.get_num_threads(),
    }
    peak = next((v for k, v in BF16_PEAK_TFLOPS.items() if k in row["device"]), None)
    if peak:
        row["share_of_bf16_peak"] = round(row["achieved_tflops"] / peak, 4)
    print(json.dumps(row))
    if args.json:
        Path(args.json).write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()

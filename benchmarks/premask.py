"""Pre-mask throughput: images/s and masks/s per backend and device.

Images are demo scenes rendered at 640x480 and resized to ``--size`` px wide (1024 by
default, SAM 2's input size), with ``--prompts`` box prompts per image taken from the
largest ground-truth objects. SAM 2 runs with random weights (speed does not depend on
them), images batched through the image encoder (``set_image_batch``, pre-processing on the
device) and all prompts of a batch decoded in one mask-decoder call; bf16 autocast on CUDA.
``sam2-reference`` is the same model through sam2's own, unmodified ``set_image_batch`` +
``predict_batch`` (CPU pre-processing, a decoder call per image): the peer, same process.

For SAM 2 the image encoder's FLOPs per image are counted with torch's FlopCounterMode,
so the report gives the achieved TFLOP/s and, on a known GPU, the share of its dense
bf16 peak.

    .venv/bin/python benchmarks/premask.py --backend classical --images 24
    .venv/bin/python benchmarks/premask.py --backend sam2 --images 4 --batch 2        # CPU
    .venv/bin/python benchmarks/premask.py --backend sam2,sam2-reference --images 512 --batch 32  # GPU
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dataset_pipeline.demo import render_episode  # noqa: E402
from dataset_pipeline.masks import mask_bbox  # noqa: E402
from dataset_pipeline.sam2_premasks.backends import Prompt  # noqa: E402

#: Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets.
BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "RTX 4090": 165.0}


def scenes(n: int, size: int, prompts: int, seed: int = 0) -> list[tuple[np.ndarray, list[Prompt]]]:
    import cv2

    out = []
    episode = 0
    while len(out) < n:
        for frame in render_episode(episode % 6, ("daylight", "dim", "warm")[episode % 3], 8, seed, episode):
            scale = size / frame.image.shape[1]
            image = cv2.resize(
                frame.image, (size, round(frame.image.shape[0] * scale)), interpolation=cv2.INTER_LINEAR
            )
            largest = sorted(frame.instances, key=lambda i: -int(i.mask.sum()))[:prompts]
            boxes = [tuple(v * scale for v in mask_bbox(i.mask)) for i in largest]
            out.append((image, [Prompt(class_id=1, box=b) for b in boxes]))
            if len(out) == n:
                break
        episode += 1
    return out


def run_backend(predict, device: str, data, batch: int, to_rle: bool = False) -> tuple[float, int]:
    """Seconds and masks for one pass of ``predict`` over ``data`` in image batches of ``batch``;
    with ``to_rle`` each mask also ends as the COCO RLE string the pre-mask table stores (the
    backend's own, found on the device, or pycocotools' from the host mask)."""
    import torch

    from dataset_pipeline.masks import encode_mask

    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    masks = 0
    for start in range(0, len(data), batch):
        chunk = data[start : start + batch]
        out = predict([image for image, _ in chunk], [p for _, p in chunk])
        masks += sum(len(o) for o in out)
        if to_rle:
            for image_masks in out:
                for m in image_masks:
                    _ = m.rle or encode_mask(m.mask)
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - started, masks


def encoder_seconds(backend, data, batch: int) -> float:
    """Seconds for the image encoder alone (with on-device pre-processing) over ``data``."""
    import torch

    cuda = backend.device.startswith("cuda")
    with torch.inference_mode(), backend._autocast():
        if cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        for start in range(0, len(data), batch):
            backend.predictor.set_image_batch([image for image, _ in data[start : start + batch]])
        if cuda:
            torch.cuda.synchronize()
    return time.perf_counter() - started


def encoder_flops(backend, image: np.ndarray) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), backend._autocast(), FlopCounterMode(display=False) as counter:
        backend.predictor.set_image_batch([image])
    return float(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backend", default="all", help="comma-separated: classical, sam2, sam2-reference; or all"
    )
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--prompts", type=int, default=6)
    parser.add_argument("--batch", type=int, default=4, help="images per image-encoder batch (SAM 2)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--config", default="configs/sam2.1/sam2.1_hiera_t.yaml")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument(
        "--to-rle",
        action="store_true",
        help="count the masks' COCO RLE encoding too (as the stage stores them)",
    )
    parser.add_argument(
        "--compile",
        default=None,
        help="torch.compile SAM 2's image encoder: max-autotune, reduce-overhead, ...",
    )
    args = parser.parse_args()

    data = scenes(args.images, args.size, args.prompts)
    results = []
    names = ["classical", "sam2", "sam2-reference"] if args.backend == "all" else args.backend.split(",")
    sam2_backend = None
    for name in names:
        if name == "classical":
            from dataset_pipeline.sam2_premasks.classical import ClassicalBackend

            backend = ClassicalBackend()
            predict = backend.predict
        elif name in ("sam2", "sam2-reference"):
            from dataset_pipeline.sam2_premasks.sam2 import Sam2Backend

            if sam2_backend is None:  # one model for both: the peer runs on the same weights
                sam2_backend = Sam2Backend(
                    args.config, checkpoint=None, device=args.device, compile_encoder=args.compile or False
                )
            backend = sam2_backend
            predict = backend.predict if name == "sam2" else backend.predict_reference
        else:
            parser.error(f"unknown backend {name!r}")
        run_backend(predict, backend.device, data[: min(len(data), args.batch)], args.batch)  # warm-up
        timings = [
            run_backend(predict, backend.device, data, args.batch, args.to_rle) for _ in range(args.repeats)
        ]
        seconds = statistics.median(t for t, _ in timings)
        masks = timings[0][1]
        row = {
            "backend": name,
            "model_version": backend.model_version,
            "device": backend.device,
            "images": len(data),
            "size": f"{data[0][0].shape[1]}x{data[0][0].shape[0]}",
            "prompts_per_image": args.prompts,
            "image_batch": args.batch,
            "median_seconds": round(seconds, 3),
            "images_per_s": round(len(data) / seconds, 2),
            "masks_per_s": round(masks / seconds, 2),
            "to_rle": args.to_rle,
            "compile": args.compile,
        }
        if name == "sam2":
            import torch

            encoder = statistics.median(
                encoder_seconds(backend, data, args.batch) for _ in range(args.repeats)
            )
            row["encoder_only_images_per_s"] = round(len(data) / encoder, 2)
            flops = encoder_flops(backend, data[0][0])
            achieved = flops * len(data) / seconds / 1e12
            row["encoder_gflops_per_image"] = round(flops / 1e9, 1)
            row["achieved_tflops"] = round(achieved, 2)
            if backend.device.startswith("cuda"):
                gpu = torch.cuda.get_device_name()
                row["gpu"] = gpu
                peak = next((v for k, v in BF16_PEAK_TFLOPS.items() if k in gpu), None)
                if peak:
                    row["share_of_bf16_peak"] = round(achieved / peak, 4)
        if name == "sam2-reference":
            # the two SAM 2 paths must give the same masks: share of differing pixels
            chunk = data[: args.batch]
            images, prompts = [i for i, _ in chunk], [p for _, p in chunk]
            ours, theirs = backend.predict(images, prompts), backend.predict_reference(images, prompts)
            pairs = [
                (a.mask, b.mask) for x, y in zip(ours, theirs, strict=True) for a, b in zip(x, y, strict=True)
            ]
            row["pixels_differing_from_sam2"] = float(
                sum(int((a != b).sum()) for a, b in pairs) / sum(a.size for a, _ in pairs)
            )
        results.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""SAM 2 backend on a GPU: our batched path against sam2's own predict_batch, on mixed prompts.

The CPU test (tests/test_sam2_premasks.py) holds the two paths bit-exact in fp32; this runs
them on CUDA under bf16 with what the benchmark does not exercise: images of different sizes
in one batch (one host copy per size), box, point and box+point prompts, an image without
prompts, and automatic generation. Prints one JSON line; exits 1 when a check fails.

    PYTHONPATH=<site with sam2, hydra>:. python3 scripts/gpu_check.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dataset_pipeline.sam2_premasks.backends import Prompt  # noqa: E402
from dataset_pipeline.sam2_premasks.sam2 import Sam2Backend  # noqa: E402


def main() -> int:
    backend = Sam2Backend(
        checkpoint=None, device=sys.argv[1] if len(sys.argv) > 1 else "cuda", automatic={"points_per_side": 8}
    )
    rng = np.random.default_rng(0)
    images = [
        (rng.random((480, 640, 3)) * 255).astype(np.uint8),
        (rng.random((720, 1280, 3)) * 255).astype(np.uint8),
        (rng.random((480, 640, 3)) * 255).astype(np.uint8),
        (rng.random((300, 400, 3)) * 255).astype(np.uint8),
    ]
    prompts = [
        [Prompt(1, box=(10, 20, 300, 400)), Prompt(2, box=(320, 40, 630, 470))],
        [Prompt(3, point=(640, 360)), Prompt(4, box=(100, 100, 700, 600), point=(400, 300))],
        [],
        [Prompt(5, box=(0, 0, 399, 299))],
    ]
    ours = backend.predict(images, prompts)
    theirs = backend.predict_reference(images, prompts)
    report: dict = {"device": backend.device, "images": []}
    ok = True
    for image, mine, ref, image_prompts in zip(images, ours, theirs, prompts, strict=True):
        shapes_ok = all(m.mask.shape == image.shape[:2] and m.mask.dtype == bool for m in mine)
        count_ok = len(mine) == len(ref) == len(image_prompts)
        differing = [float((a.mask != b.mask).mean()) for a, b in zip(mine, ref, strict=True)]
        score_gap = [abs(a.score - b.score) for a, b in zip(mine, ref, strict=True)]
        entry = {
            "size": list(image.shape[:2]),
            "masks": len(mine),
            "pixels_differing": [round(d, 5) for d in differing],
            "score_gap": [round(g, 4) for g in score_gap],
            "foreground": [round(float(m.mask.mean()), 3) for m in mine],
        }
        report["images"].append(entry)
        ok &= shapes_ok and count_ok and all(d < 0.01 for d in differing) and all(g < 0.02 for g in score_gap)
    generated = backend.generate(images[0])
    report["automatic_masks"] = len(generated)
    ok &= all(m.mask.shape == images[0].shape[:2] for m in generated)
    report["ok"] = bool(ok)
    print(json.dumps(report))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

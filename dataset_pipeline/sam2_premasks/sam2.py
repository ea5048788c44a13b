"""The SAM 2 backend, on the ``sam2`` package: build_sam2 + SAM2ImagePredictor + SAM2AutomaticMaskGenerator.

Images go through the image encoder in batches (``set_image_batch``), and all prompts of
an image are decoded in one batched call (``predict_batch``): one embedding per image,
never one per prompt. On CUDA the model runs under bf16 autocast.

sam2 1.1.0 initialises Hydra with ``version_base="1.2"`` at import, which the Hydra 1.4 we
pin (for Dagster's antlr) rejects; so Hydra is initialised first with sam2's package folder
as config dir (sam2's ``__init__`` then skips its own call). See DEPENDENCIES in docs.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
from pathlib import Path

import numpy as np

from dataset_pipeline.sam2_premasks.backends import PredictedMask, Prompt

DEFAULT_MODEL_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"


def init_sam2_hydra() -> None:
    """Initialise Hydra with sam2's configs before ``import sam2`` (idempotent)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if not GlobalHydra.instance().is_initialized():
        spec = importlib.util.find_spec("sam2")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("the sam2 package is not installed")
        initialize_config_dir(config_dir=spec.submodule_search_locations[0])


def resolve_device(device: str = "auto") -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def checkpoint_fingerprint(path: str | Path) -> str:
    """First 12 hex digits of the checkpoint's sha256: recorded in every mask's model_version."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


class Sam2Backend:
    """SAM 2 (image mode) for box / point prompts and automatic masks.

    ``checkpoint=None`` builds the model with random weights: only for tests and speed
    benchmarks (speed does not depend on the weights). The pipeline's resource never does.
    """

    name = "sam2"

    def __init__(
        self,
        model_config: str = DEFAULT_MODEL_CONFIG,
        checkpoint: str | None = None,
        device: str = "auto",
        bf16: bool = True,
        automatic: dict | None = None,
        seed: int = 0,
    ) -> None:
        init_sam2_hydra()
        import torch
        from hydra.utils import execution_whitelist
        from sam2.build_sam import build_sam2
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        self.device = resolve_device(device)
        if checkpoint is not None and not Path(checkpoint).is_file():
            raise FileNotFoundError(f"SAM 2 checkpoint {checkpoint!r} does not exist")
        torch.manual_seed(seed)
        with execution_whitelist(["sam2.*"]):
            self.model = build_sam2(model_config, ckpt_path=checkpoint, device=self.device)
        self.predictor = SAM2ImagePredictor(self.model)
        self.autocast_bf16 = bf16 and self.device.startswith("cuda")
        weights = checkpoint_fingerprint(checkpoint) if checkpoint else "random-weights"
        self.model_version = f"{Path(model_config).stem}@{weights}"
        self.automatic = {
            "points_per_side": 16,
            "points_per_batch": 64,
            "pred_iou_thresh": 0.7,
            "stability_score_thresh": 0.9,
            "min_mask_region_area": 0,
            **(automatic or {}),
        }

    def _autocast(self):
        import torch

        if self.autocast_bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def predict(self, images: list[np.ndarray], prompts: list[list[Prompt]]) -> list[list[PredictedMask]]:
        import torch

        results: list[list[PredictedMask]] = [[] for _ in images]
        todo = [i for i, p in enumerate(prompts) if p]
        if not todo:
            return results
        with torch.inference_mode(), self._autocast():
            self.predictor.set_image_batch([images[i] for i in todo])
            boxes, points, labels = [], [], []
            for i in todo:
                boxes.append(_boxes(prompts[i]))
                coords, point_labels = _points(prompts[i])
                points.append(coords)
                labels.append(point_labels)
            has_boxes = any(b is not None for b in boxes)
            has_points = any(p is not None for p in points)
            masks, scores, _ = self.predictor.predict_batch(
                point_coords_batch=points if has_points else None,
                point_labels_batch=labels if has_points else None,
                box_batch=boxes if has_boxes else None,
                multimask_output=False,
            )
        for slot, i in enumerate(todo):
            n = len(prompts[i])
            image_masks = np.asarray(masks[slot]).reshape(n, -1, *images[i].shape[:2])[:, 0] > 0
            image_scores = np.asarray(scores[slot], dtype=np.float32).reshape(n, -1)[:, 0]
            results[i] = [
                PredictedMask(
                    image_masks[k], float(np.clip(image_scores[k], 0, 1)), p.prompt_type, p.class_id
                )
                for k, p in enumerate(prompts[i])
            ]
        return results

    def generate(self, image: np.ndarray) -> list[PredictedMask]:
        import torch
        from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

        generator = SAM2AutomaticMaskGenerator(self.model, output_mode="binary_mask", **self.automatic)
        with torch.inference_mode(), self._autocast():
            records = generator.generate(image)
        return [
            PredictedMask(
                np.asarray(r["segmentation"], dtype=bool), float(np.clip(r["predicted_iou"], 0, 1)), "auto"
            )
            for r in records
        ]


def _boxes(prompts: list[Prompt]) -> np.ndarray | None:
    """(N, 4) boxes of an image's prompts; prompts without a box get the whole-point box."""
    if all(p.box is None for p in prompts):
        return None
    rows = []
    for p in prompts:
        if p.box is not None:
            rows.append(p.box)
        else:  # a point-only prompt next to box prompts: a small box around the point
            assert p.point is not None
            x, y = p.point
            rows.append((x - 8, y - 8, x + 8, y + 8))
    return np.asarray(rows, dtype=np.float32)


def _points(prompts: list[Prompt]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(N, 1, 2) positive points and (N, 1) labels; prompts without a point repeat their box centre."""
    if all(p.point is None for p in prompts):
        return None, None
    coords = []
    for p in prompts:
        if p.point is not None:
            coords.append([p.point])
        else:
            assert p.box is not None
            coords.append([((p.box[0] + p.box[2]) / 2, (p.box[1] + p.box[3]) / 2)])
    return np.asarray(coords, dtype=np.float32), np.ones((len(prompts), 1), dtype=np.int32)

"""The SAM 2 backend, on the ``sam2`` package: build_sam2 + SAM2ImagePredictor + SAM2AutomaticMaskGenerator.

Images go through the image encoder in batches (``set_image_batch``), converted, resized and
normalised on the model's device (sam2's own transforms do that on the CPU, image by image,
which at GPU rates costs more than the encoder). Every prompt of the batch - all images - is
then decoded in one prompt-encoder + mask-decoder call, each prompt paired with its image's
embedding: one embedding per image, never one per prompt, and one decoder launch per batch
instead of sam2's ``predict_batch`` loop over images (which also copies float masks and
low-res logits to the host). ``predict_reference`` is that unmodified sam2 path, kept for the
equivalence test and as the benchmark's peer. On CUDA the model runs under bf16 autocast, the
masks' COCO RLE is found on the device (``masks.encode_masks_on_device``), and the image encoder
can be compiled (``compile_encoder``: ``torch.compile``, max-autotune; the first batch of each
size compiles).

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

from dataset_pipeline.masks import encode_masks_on_device
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
        compile_encoder: bool | str = False,
        image_size: int | None = None,
    ) -> None:
        init_sam2_hydra()
        import torch
        from hydra.utils import execution_whitelist
        from sam2.build_sam import build_sam2

        self.device = resolve_device(device)
        if checkpoint is not None and not Path(checkpoint).is_file():
            raise FileNotFoundError(f"SAM 2 checkpoint {checkpoint!r} does not exist")
        torch.manual_seed(seed)
        # image_size: the config's input side (1024) unless given; tests run at 256 (16x fewer pixels)
        overrides = [f"++model.image_size={image_size}"] if image_size else []
        with execution_whitelist(["sam2.*"]):
            self.model = build_sam2(
                model_config, ckpt_path=checkpoint, device=self.device, hydra_overrides_extra=overrides
            )
        if compile_encoder:
            # a mode name ("max-autotune", "reduce-overhead": CUDA graphs) or True; "eager" is
            # dynamo alone (tests: the compiled path without a C compiler's minutes)
            mode = compile_encoder if isinstance(compile_encoder, str) else "max-autotune"
            if mode == "eager":
                self.model.image_encoder = torch.compile(self.model.image_encoder, backend="eager")
            else:
                self.model.image_encoder = torch.compile(self.model.image_encoder, mode=mode)
        self.predictor = self._image_predictor()
        self.predictor._transforms.forward_batch = self._transform_on_device
        self._reference_predictor = None
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

    def _transform_on_device(self, images: list[np.ndarray]):
        """sam2's ToTensor + Resize + Normalize, on the model's device from the uint8 pixels."""
        import torch

        resize_normalize = self.predictor._transforms.transforms
        return torch.stack(
            [
                resize_normalize(
                    torch.from_numpy(np.require(image, requirements=["C", "W"]))
                    .to(self.device)
                    .permute(2, 0, 1)
                    .float()
                    / 255.0
                )
                for image in images
            ]
        )

    def predict(self, images: list[np.ndarray], prompts: list[list[Prompt]]) -> list[list[PredictedMask]]:
        """Masks for every prompt of every image: one encoder batch, one decoder call per prompt layout."""
        import torch

        results: list[list[PredictedMask]] = [[] for _ in images]
        todo = [i for i, p in enumerate(prompts) if p]
        if not todo:
            return results
        predictor = self.predictor
        with torch.inference_mode(), self._autocast():
            predictor.set_image_batch([images[i] for i in todo])
            # Prompts with the same layout (box, point, both) decode together; an image's
            # prompts share one layout (_boxes / _points fill the missing half).
            layouts: dict[tuple[bool, bool], list[int]] = {}
            for slot, i in enumerate(todo):
                key = (
                    any(p.box is not None for p in prompts[i]),
                    any(p.point is not None for p in prompts[i]),
                )
                layouts.setdefault(key, []).append(slot)
            for slots in layouts.values():
                coords, labels, owner = [], [], []
                for slot in slots:
                    i = todo[slot]
                    slot_coords, slot_labels = self._sparse_prompt(prompts[i], predictor._orig_hw[slot])
                    coords.append(slot_coords)
                    labels.append(slot_labels)
                    owner += [slot] * len(prompts[i])
                owner_index = torch.as_tensor(owner, device=self.device)
                points = (torch.cat(coords).to(self.device), torch.cat(labels).to(self.device))
                sparse, dense = self.model.sam_prompt_encoder(points=points, boxes=None, masks=None)
                features = predictor._features
                low_res, iou, _, _ = self.model.sam_mask_decoder(
                    image_embeddings=features["image_embed"].index_select(0, owner_index),
                    image_pe=self.model.sam_prompt_encoder.get_dense_pe(),
                    sparse_prompt_embeddings=sparse,
                    dense_prompt_embeddings=dense,
                    multimask_output=False,
                    repeat_image=False,
                    high_res_features=[f.index_select(0, owner_index) for f in features["high_res_feats"]],
                )
                # Up-sample, threshold and copy to the host once per image size: one copy into
                # page-locked memory and one wait, not a synchronising copy per image.
                bounds = np.cumsum([0] + [len(prompts[todo[slot]]) for slot in slots])
                by_size: dict[tuple[int, int], list[int]] = {}
                for k, slot in enumerate(slots):
                    by_size.setdefault(tuple(predictor._orig_hw[slot]), []).append(k)
                for orig_hw, members in by_size.items():
                    rows = np.concatenate([np.arange(bounds[k], bounds[k + 1]) for k in members])
                    rows_index = torch.as_tensor(rows, device=self.device)
                    logits = predictor._transforms.postprocess_masks(
                        low_res.index_select(0, rows_index), orig_hw
                    )
                    on_device = logits[:, 0] > predictor.mask_threshold
                    rles = encode_masks_on_device(on_device) if self.device.startswith("cuda") else None
                    masks = self._to_host(on_device)
                    scores = self._to_host(iou.index_select(0, rows_index)[:, 0].float())
                    if self.device.startswith("cuda"):
                        torch.cuda.current_stream().synchronize()
                    masks_np, scores_np = masks.numpy(), scores.numpy()
                    first = 0
                    for k in members:
                        i = todo[slots[k]]
                        n = len(prompts[i])
                        results[i] = _predicted(
                            masks_np[first : first + n],
                            scores_np[first : first + n],
                            prompts[i],
                            rles[first : first + n] if rles is not None else None,
                        )
                        first += n
        return results

    def _to_host(self, tensor):
        """``tensor`` on the host; from CUDA an asynchronous copy into pinned memory (wait before use)."""
        import torch

        if not self.device.startswith("cuda"):
            return tensor.cpu()
        host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
        host.copy_(tensor, non_blocking=True)
        return host

    def _sparse_prompt(self, prompts: list[Prompt], orig_hw: tuple[int, int]):
        """(N, P, 2) coordinates in the model's input frame and (N, P) labels: box corners
        (labels 2, 3) first, then the point (label 1), as sam2's own ``_predict`` orders them.
        Built on the host: the caller moves the whole batch's prompts to the device at once."""
        import torch

        transforms = self.predictor._transforms
        coords, labels = [], []
        boxes = _boxes(prompts)
        if boxes is not None:
            box = torch.as_tensor(boxes, dtype=torch.float)
            coords.append(transforms.transform_boxes(box, normalize=True, orig_hw=orig_hw).reshape(-1, 2, 2))
            labels.append(torch.tensor([[2, 3]], dtype=torch.int).repeat(len(prompts), 1))
        points, point_labels = _points(prompts)
        if points is not None:
            point = torch.as_tensor(points, dtype=torch.float)
            coords.append(transforms.transform_coords(point, normalize=True, orig_hw=orig_hw))
            labels.append(torch.as_tensor(point_labels, dtype=torch.int))
        return torch.cat(coords, dim=1), torch.cat(labels, dim=1)

    def predict_reference(
        self, images: list[np.ndarray], prompts: list[list[Prompt]]
    ) -> list[list[PredictedMask]]:
        """The same masks through sam2's own, unmodified ``set_image_batch`` + ``predict_batch``."""
        import torch

        predictor = self._reference_predictor
        if predictor is None:
            predictor = self._reference_predictor = self._image_predictor()
        results: list[list[PredictedMask]] = [[] for _ in images]
        todo = [i for i, p in enumerate(prompts) if p]
        if not todo:
            return results
        with torch.inference_mode(), self._autocast():
            predictor.set_image_batch([images[i] for i in todo])
            boxes = [_boxes(prompts[i]) for i in todo]
            points = [_points(prompts[i]) for i in todo]
            has_boxes = any(b is not None for b in boxes)
            has_points = any(p is not None for p, _ in points)
            masks, scores, _ = predictor.predict_batch(
                point_coords_batch=[p for p, _ in points] if has_points else None,
                point_labels_batch=[lab for _, lab in points] if has_points else None,
                box_batch=boxes if has_boxes else None,
                multimask_output=False,
            )
        for slot, i in enumerate(todo):
            n = len(prompts[i])
            image_masks = np.asarray(masks[slot]).reshape(n, -1, *images[i].shape[:2])[:, 0] > 0
            image_scores = np.asarray(scores[slot], dtype=np.float32).reshape(n, -1)[:, 0]
            results[i] = _predicted(image_masks, image_scores, prompts[i])
        return results

    def embed(self, image: np.ndarray) -> dict:
        """One image's encoder output (features and size): what an interactive session caches so
        that a second click on the same image runs only the prompt encoder and mask decoder."""
        import torch

        predictor = self._interactive_predictor()
        with torch.inference_mode(), self._autocast():
            predictor.set_image(image)
        return {"features": predictor._features, "orig_hw": list(predictor._orig_hw)}

    def predict_interactive(
        self,
        embedding: dict,
        points: list[tuple[float, float]],
        point_labels: list[int],
        box: tuple[float, float, float, float] | None = None,
        class_id: int | None = None,
    ) -> PredictedMask:
        """The mask for an annotator's clicks (label 1 positive, 0 negative) and/or box on an embedded
        image. One click alone is ambiguous (part or whole?): three candidates, the best-scoring kept,
        as SAM's authors advise; several prompts decode one mask."""
        import torch

        predictor = self._interactive_predictor()
        predictor._features = embedding["features"]
        predictor._orig_hw = list(embedding["orig_hw"])
        predictor._is_image_set, predictor._is_batch = True, False
        single_click = box is None and len(points) == 1
        with torch.inference_mode(), self._autocast():
            masks, scores, _ = predictor.predict(
                point_coords=np.asarray(points, dtype=np.float32) if points else None,
                point_labels=np.asarray(point_labels, dtype=np.int32) if points else None,
                box=np.asarray(box, dtype=np.float32) if box is not None else None,
                multimask_output=single_click,
            )
        best = int(np.argmax(scores))
        kind = "box" if box is not None else "point"
        return PredictedMask(np.asarray(masks[best]) > 0, float(np.clip(scores[best], 0, 1)), kind, class_id)

    def _interactive_predictor(self):
        if getattr(self, "_interactive", None) is None:
            self._interactive = self._image_predictor()
        return self._interactive

    def _image_predictor(self):
        """sam2's SAM2ImagePredictor, its backbone feature sizes set for the model's input size (sam2
        writes those of 1024 px; the same at 1024, right at any other configured size)."""
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        predictor = SAM2ImagePredictor(self.model)
        side = int(self.model.image_size)
        predictor._bb_feat_sizes = [(side // 4, side // 4), (side // 8, side // 8), (side // 16, side // 16)]
        return predictor

    def generate_batch(self, images: list[np.ndarray]) -> list[list[PredictedMask]]:
        return [self.generate(image) for image in images]  # one model: images in turn

    def generate(self, image: np.ndarray) -> list[PredictedMask]:
        import torch
        from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

        generator = SAM2AutomaticMaskGenerator(self.model, output_mode="binary_mask", **self.automatic)
        generator.predictor._bb_feat_sizes = self._image_predictor()._bb_feat_sizes
        with torch.inference_mode(), self._autocast():
            records = generator.generate(image)
        return [
            PredictedMask(
                np.asarray(r["segmentation"], dtype=bool), float(np.clip(r["predicted_iou"], 0, 1)), "auto"
            )
            for r in records
        ]


def _predicted(
    masks: np.ndarray, scores: np.ndarray, prompts: list[Prompt], rles: list[str] | None = None
) -> list[PredictedMask]:
    """One PredictedMask per prompt, score clipped to [0, 1]."""
    return [
        PredictedMask(
            masks[k], float(np.clip(scores[k], 0, 1)), p.prompt_type, p.class_id, rles[k] if rles else None
        )
        for k, p in enumerate(prompts)
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

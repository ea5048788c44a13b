"""Text-prompted boxes for users without a detector: OWLv2 (``transformers``) asked for each class's phrases.

Why OWLv2 and not Grounding DINO: OWLv2 scores every text query on its own (a sigmoid per query
and box), so a class's score is the best of its own phrases and a per-class threshold means what
it says; Grounding DINO reads all phrases as one caption whose tokens compete (a long taxonomy
overflows its 256 tokens and a phrase's score depends on the others beside it). OWLv2 also takes
an image crop as a query (an example from the guideline) and is one ViT, which batches simply on
the GPU. Grounding DINO is the stronger small-object detector; ``Detector`` is the seam to add it.

The checkpoint is a local folder as ``save_pretrained`` writes it (config, weights, processor
and tokenizer files; e.g. google/owlv2-base-patch16-ensemble copied in): nothing is downloaded.
Images are prepared by the checkpoint's own image processor on the model's device (transformers'
torchvision processor takes ``device``); the text queries are tokenised once per taxonomy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from dataset_pipeline.taxonomy import Taxonomy

DEFAULT_DETECTOR_THRESHOLD = 0.3
DEFAULT_NMS_IOU = 0.5
DEFAULT_MAX_DETECTIONS = 50


@dataclass(frozen=True)
class Detection:
    """One box a detector found: ``(x0, y0, x1, y1)`` in pixels, its class and the phrase that found it."""

    class_id: int
    box: tuple[float, float, float, float]
    score: float
    query: str


class Detector(Protocol):
    """An open-vocabulary detector asked for a taxonomy's classes."""

    name: str
    model_version: str
    device: str

    def detect(self, images: list[np.ndarray], taxonomy: Taxonomy) -> list[list[Detection]]:
        """Boxes per RGB uint8 image, thresholded per class and suppressed across classes."""
        ...


def class_queries(taxonomy: Taxonomy) -> tuple[list[str], np.ndarray]:
    """Every foreground class's text queries, flattened, and the class id of each.

    >>> from dataset_pipeline.taxonomy import load_taxonomy
    >>> queries, owners = class_queries(load_taxonomy())
    >>> queries[0], int(owners[0]), len(queries) == len(owners)
    ('a mug', 1, True)
    """
    queries: list[str] = []
    owners: list[int] = []
    for cls in taxonomy.foreground:
        for query in cls.text_queries:
            queries.append(query)
            owners.append(cls.id)
    return queries, np.asarray(owners, dtype=np.int64)


def class_thresholds(taxonomy: Taxonomy, default: float) -> np.ndarray:
    """Score threshold per class id (index = id; background never passes)."""
    values = [1.1] + [
        c.detection_threshold if c.detection_threshold is not None else default for c in taxonomy.foreground
    ]
    return np.asarray(values, dtype=np.float64)


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``(N, 4)`` and ``(M, 4)`` boxes ``(x0, y0, x1, y1)``.

    >>> box_iou_matrix(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 15, 10], [20, 20, 30, 30]]))
    array([[0.33333333, 0.        ]])
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def suppress_across_classes(
    boxes: np.ndarray, scores: np.ndarray, iou: float = DEFAULT_NMS_IOU
) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression that ignores the class, best score first.

    One object found as "a mug" and as "a bowl" is one pre-mask, of the class that scored higher:
    two masks on one object would each need a person to delete one.

    >>> suppress_across_classes(np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]]),
    ...                         np.array([0.9, 0.8, 0.5])).tolist()
    [0, 2]
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep: list[int] = []
    overlaps = box_iou_matrix(boxes, boxes) if len(boxes) else np.zeros((0, 0))
    suppressed = np.zeros(len(boxes), dtype=bool)
    for index in order:
        if suppressed[index]:
            continue
        keep.append(int(index))
        suppressed |= overlaps[index] > iou
    return np.asarray(keep, dtype=np.int64)


def select_detections(
    boxes: np.ndarray,
    query_scores: np.ndarray,
    owners: np.ndarray,
    queries: list[str],
    thresholds: np.ndarray,
    *,
    nms_iou: float = DEFAULT_NMS_IOU,
    max_detections: int = DEFAULT_MAX_DETECTIONS,
) -> list[Detection]:
    """From one image's candidate boxes ``(P, 4)`` and their per-query scores ``(P, Q)``: each box's
    best query names its class, the class's threshold filters, NMS across classes, best first.

    >>> select_detections(np.array([[0., 0, 10, 10], [1, 0, 11, 10]]), np.array([[0.9, 0.1], [0.2, 0.8]]),
    ...                   np.array([1, 2]), ["a mug", "a bowl"], np.array([1.1, 0.5, 0.5]))
    [Detection(class_id=1, box=(0.0, 0.0, 10.0, 10.0), score=0.9, query='a mug')]
    """
    if not len(boxes) or not len(queries):
        return []
    best = query_scores.argmax(axis=1)
    score = query_scores[np.arange(len(boxes)), best]
    class_of = owners[best]
    passing = np.flatnonzero(score >= thresholds[class_of])
    widths = boxes[passing, 2] - boxes[passing, 0]
    heights = boxes[passing, 3] - boxes[passing, 1]
    passing = passing[(widths >= 1) & (heights >= 1)]
    kept = passing[suppress_across_classes(boxes[passing], score[passing], nms_iou)][:max_detections]
    return [
        Detection(
            class_id=int(class_of[k]),
            box=tuple(round(float(v), 2) for v in boxes[k]),  # type: ignore[arg-type]
            score=round(float(score[k]), 4),
            query=queries[best[k]],
        )
        for k in kept
    ]


class OwlDetector:
    """OWLv2 from a local ``save_pretrained`` folder, batched on its device.

    Tests and speed benchmarks pass ``model`` and ``processor`` built from a config with random
    weights (``checkpoint=None``); the pipeline's resource always names a folder.
    """

    name = "owlv2"

    def __init__(
        self,
        checkpoint: str | None = None,
        *,
        device: str = "auto",
        threshold: float = DEFAULT_DETECTOR_THRESHOLD,
        nms_iou: float = DEFAULT_NMS_IOU,
        max_detections: int = DEFAULT_MAX_DETECTIONS,
        bf16: bool = True,
        model=None,
        processor=None,
    ) -> None:
        from transformers import Owlv2ForObjectDetection, Owlv2Processor

        from dataset_pipeline.sam2_premasks.sam2 import resolve_device

        self.device = resolve_device(device)
        if model is None:
            if checkpoint is None:
                raise ValueError("OwlDetector needs a checkpoint folder, or a model and processor (tests)")
            folder = Path(checkpoint)
            if not (folder / "config.json").is_file():
                raise FileNotFoundError(
                    f"detector checkpoint {checkpoint!r} is not a save_pretrained folder (no config.json): "
                    "copy e.g. google/owlv2-base-patch16-ensemble there, weights and processor files together"
                )
            model = Owlv2ForObjectDetection.from_pretrained(folder, local_files_only=True)
            processor = Owlv2Processor.from_pretrained(folder, local_files_only=True)
        self.model = model.eval().to(self.device)
        self.processor = processor
        self.threshold = threshold
        self.nms_iou = nms_iou
        self.max_detections = max_detections
        self.bf16 = bf16 and self.device.startswith("cuda")
        weights = _folder_fingerprint(Path(checkpoint)) if checkpoint else "random-weights"
        self.model_version = f"owlv2-{model.config.vision_config.image_size}px@{weights}"
        self._text_cache: dict[tuple[str, ...], tuple[object, object]] = {}

    def _text_inputs(self, queries: list[str]):
        """Token ids and mask of the queries, once per query list (they are the same for every image)."""
        key = tuple(queries)
        if key not in self._text_cache:
            tokens = self.processor.tokenizer(
                queries, padding="max_length", truncation=True, return_tensors="pt"
            )
            self._text_cache[key] = (
                tokens["input_ids"].to(self.device),
                tokens["attention_mask"].to(self.device),
            )
        return self._text_cache[key]

    def _pixels(self, images: list[np.ndarray]):
        """OWLv2's input, made by the checkpoint's own image processor (transformers' torchvision one:
        rescale, pad to a square, anti-aliased resize, normalise) on the model's device."""
        import torch

        tensors = [torch.tensor(image, device=self.device).permute(2, 0, 1) for image in images]
        pixels = self.processor.image_processor(images=tensors, return_tensors="pt", device=self.device)
        return pixels["pixel_values"].to(self.device)

    def query_scores(self, images: list[np.ndarray], queries: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Boxes ``(B, P, 4)`` in each image's pixels and scores ``(B, P, Q)`` for every query."""
        import contextlib

        import torch

        input_ids, attention_mask = self._text_inputs(queries)
        pixels = self._pixels(images)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        with torch.inference_mode(), autocast:
            output = self.model(
                input_ids=input_ids.repeat(len(images), 1),
                attention_mask=attention_mask.repeat(len(images), 1),
                pixel_values=pixels,
            )
        scores = torch.sigmoid(output.logits.float()).cpu().numpy()
        centre = output.pred_boxes.float().cpu().numpy()  # (cx, cy, w, h) of the padded square, 0..1
        sides = np.asarray([max(image.shape[:2]) for image in images], dtype=np.float64)[:, None, None]
        corners = np.concatenate(
            [centre[..., :2] - centre[..., 2:] / 2, centre[..., :2] + centre[..., 2:] / 2], axis=-1
        )
        boxes = corners * sides
        heights = np.asarray([image.shape[0] for image in images], dtype=np.float64)[:, None]
        widths = np.asarray([image.shape[1] for image in images], dtype=np.float64)[:, None]
        boxes[..., 0] = np.clip(boxes[..., 0], 0, widths)
        boxes[..., 2] = np.clip(boxes[..., 2], 0, widths)
        boxes[..., 1] = np.clip(boxes[..., 1], 0, heights)
        boxes[..., 3] = np.clip(boxes[..., 3], 0, heights)
        return boxes, scores

    def detect(self, images: list[np.ndarray], taxonomy: Taxonomy) -> list[list[Detection]]:
        if not images:
            return []
        queries, owners = class_queries(taxonomy)
        thresholds = class_thresholds(taxonomy, self.threshold)
        boxes, scores = self.query_scores(images, queries)
        return [
            select_detections(
                boxes[i],
                scores[i],
                owners,
                queries,
                thresholds,
                nms_iou=self.nms_iou,
                max_detections=self.max_detections,
            )
            for i in range(len(images))
        ]


def _folder_fingerprint(folder: Path) -> str:
    """First 12 hex digits of the sha256 of the folder's weight files: what model_version records."""
    import hashlib

    digest = hashlib.sha256()
    weights = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
    for path in weights:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:12] if weights else "no-weights"


def random_owl_detector(device: str = "cpu", image_size: int = 128, seed: int = 0, **settings) -> OwlDetector:
    """A small OWLv2 with random weights and a byte-level tokenizer, built from its config: for tests
    and speed benchmarks (speed depends on the sizes, not the weights). Nothing is downloaded."""
    import torch
    from transformers import (
        CLIPTokenizer,
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2ImageProcessor,
        Owlv2Processor,
    )

    vocab = {token: index for index, token in enumerate(_byte_tokens())}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)
    processor = Owlv2Processor(
        image_processor=Owlv2ImageProcessor(size={"height": image_size, "width": image_size}),
        tokenizer=tokenizer,
    )
    config = Owlv2Config(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 16,
            "bos_token_id": vocab["<|startoftext|>"],
            "eos_token_id": vocab["<|endoftext|>"],
            "pad_token_id": vocab["<|endoftext|>"],
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": image_size,
            "patch_size": 16,
        },
        projection_dim=32,
    )
    torch.manual_seed(seed)
    return OwlDetector(device=device, model=Owlv2ForObjectDetection(config), processor=processor, **settings)


def _byte_tokens() -> list[str]:
    """GPT-2's byte-to-unicode alphabet, each symbol alone and as a word end: a BPE vocabulary with no
    merges, so any text tokenises (letter by letter)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    symbols = [chr(b) for b in printable]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            symbols.append(chr(256 + extra))
            extra += 1
    return symbols + [s + "</w>" for s in symbols]

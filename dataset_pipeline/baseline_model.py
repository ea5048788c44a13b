"""baseline_model: a DeepLabV3+ trained on the train split, selected on val, measured on test.

The reference labels of an image are one annotator's instances (gold images have several):
an expert-approved annotation first, then an accepted peer-reviewed one, then the annotator
with the best IoU against consensus in the agreement report. The semantic class map derives
from those instances (foreground z_order wins).

segmentation-models-pytorch builds the model with ``encoder_weights=None`` (nothing is
downloaded); ``encoder_weights_path`` loads a local encoder state dict when given. On CUDA
training runs under bf16 autocast in channels-last memory format.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dataset_pipeline import layout
from dataset_pipeline.annotation_corpus import semantic_class_map
from dataset_pipeline.dataset_splits import SPLITS
from dataset_pipeline.figures import confusion_image, png_bytes
from dataset_pipeline.images import decode_image
from dataset_pipeline.metrics import (
    confusion_matrix,
    mean_iou,
    most_confused_with,
    per_class_iou,
    pixel_accuracy,
)
from dataset_pipeline.sam2_premasks.sam2 import resolve_device
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.taxonomy import Taxonomy
from dataset_pipeline.verdicts import Verdict

REVIEW_RANK = {"expert_approved": 0, "peer_reviewed": 1, "unreviewed": 2}


def reference_annotations(
    annotations: pd.DataFrame, annotator_quality: dict[str, float] | None = None
) -> pd.DataFrame:
    """One annotator's instances per image: expert > accepted peer review > best consensus IoU > name."""
    quality = annotator_quality or {}
    ranked = annotations.assign(
        _review=annotations.review_status.map(REVIEW_RANK).fillna(2)
        - annotations.review_accepted.fillna(False).astype(bool).astype(int) * 0.5,
        _quality=-annotations.annotator_id.map(quality).fillna(0.0),
    )
    best = (
        ranked.groupby(["image_id", "annotator_id"], sort=False)[["_review", "_quality"]]
        .min()
        .reset_index()
        .sort_values(["image_id", "_review", "_quality", "annotator_id"])
        .drop_duplicates("image_id")
    )
    chosen = set(zip(best.image_id, best.annotator_id, strict=True))
    keep = [(i, a) in chosen for i, a in zip(annotations.image_id, annotations.annotator_id, strict=True)]
    return annotations[keep].reset_index(drop=True)


def reference_labels(store: DatasetStore) -> pd.DataFrame:
    """The corpus's ground truth: one annotator's instances per image, ranked with the agreement
    report's consensus IoU. Every stage that scores or ships labels (baseline, zero-shot, release)
    takes them from here, so they all measure against the same truth."""
    quality = store.read_parquet(layout.AGREEMENT_TABLES["per_annotator"])
    return reference_annotations(
        store.read_parquet(layout.CORPUS_ANNOTATIONS_KEY),
        dict(zip(quality.annotator_id, quality.iou_vs_consensus.fillna(0), strict=True)),
    )


def images_by_split(store: DatasetStore) -> dict[str, pd.DataFrame]:
    """The corpus images of each split (train, val, test)."""
    images = store.read_parquet(layout.CORPUS_IMAGES_KEY)
    splits = store.read_parquet(layout.SPLITS_KEY)
    return {s: images[images.image_id.isin(splits[splits.split == s].image_id)] for s in SPLITS}


@dataclass
class Samples:
    """Images and class maps at training size, in memory (N, H, W, 3) uint8 and (N, H, W) uint8."""

    image_ids: list[str]
    images: np.ndarray
    labels: np.ndarray


def load_samples(
    store: DatasetStore, images: pd.DataFrame, annotations: pd.DataFrame | None, size: int
) -> Samples:
    """Decode and resize each image (and rasterize its class map) to ``size`` x ``size``."""
    import cv2

    by_image = dict(tuple(annotations.groupby("image_id", sort=False))) if annotations is not None else {}
    out_images, out_labels = [], []
    for row in images.itertuples():
        rgb = decode_image(store.read_bytes(row.uri), row.uri).rgb
        out_images.append(cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA))
        instances = by_image.get(row.image_id)
        class_map = (
            semantic_class_map(instances, row.height, row.width)
            if instances is not None
            else np.zeros((row.height, row.width), np.uint8)
        )
        out_labels.append(cv2.resize(class_map, (size, size), interpolation=cv2.INTER_NEAREST))
    shape = (0, size, size)
    return Samples(
        image_ids=list(images.image_id),
        images=np.stack(out_images) if out_images else np.zeros((*shape, 3), np.uint8),
        labels=np.stack(out_labels) if out_labels else np.zeros(shape, np.uint8),
    )


@dataclass
class TrainConfig:
    architecture: str = "DeepLabV3Plus"
    encoder: str = "mobilenet_v2"
    encoder_weights_path: str | None = None
    image_size: int = 128
    epochs: int = 20
    batch_size: int = 8
    learning_rate: float = 3e-3
    seed: int = 0
    device: str = "auto"
    bf16: bool = True


def build_model(config: TrainConfig, num_classes: int):
    """The smp model, with random encoder weights unless a local weights file is given."""
    import segmentation_models_pytorch as smp
    import torch

    torch.manual_seed(config.seed)  # the random initialisation is part of what the seed fixes
    model = smp.create_model(
        config.architecture, encoder_name=config.encoder, encoder_weights=None, classes=num_classes
    )
    if config.encoder_weights_path:
        state = torch.load(config.encoder_weights_path, map_location="cpu", weights_only=True)
        missing, unexpected = model.encoder.load_state_dict(state, strict=False)
        if len(missing) == len(list(model.encoder.state_dict())):
            raise ValueError(f"{config.encoder_weights_path}: no tensor matches encoder {config.encoder!r}")
    return model


def _to_tensors(samples: Samples, indices: np.ndarray, device: str, flip: np.ndarray | None = None):
    import torch

    images = samples.images[indices]
    labels = samples.labels[indices]
    if flip is not None:
        images = np.where(flip[:, None, None, None], images[:, :, ::-1], images)
        labels = np.where(flip[:, None, None], labels[:, :, ::-1], labels)
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    x = (x - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor([0.229, 0.224, 0.225])[
        :, None, None
    ]
    y = torch.from_numpy(np.ascontiguousarray(labels)).long()
    return x.to(device).contiguous(memory_format=torch.channels_last), y.to(device)


def predict(
    model, samples: Samples, device: str, bf16: bool = True, batch_size: int = 8
) -> tuple[np.ndarray, np.ndarray, float]:
    """(class maps, per-pixel entropy, median seconds per image) for ``samples``."""
    import contextlib

    import torch

    model.eval()
    preds, entropies, seconds = [], [], []
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.startswith("cuda") and bf16
        else contextlib.nullcontext()
    )
    with torch.inference_mode(), autocast:
        for start in range(0, len(samples.image_ids), batch_size):
            indices = np.arange(start, min(start + batch_size, len(samples.image_ids)))
            x, _ = _to_tensors(samples, indices, device)
            began = time.perf_counter()
            logits = model(x).float()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            seconds.append((time.perf_counter() - began) / len(indices))
            probabilities = logits.softmax(dim=1)
            entropy = -(probabilities * probabilities.clamp_min(1e-8).log()).sum(dim=1)
            preds.append(logits.argmax(dim=1).cpu().numpy().astype(np.uint8))
            entropies.append(entropy.cpu().numpy())
    if not preds:
        return np.zeros((0,), np.uint8), np.zeros((0,)), float("nan")
    return np.concatenate(preds), np.concatenate(entropies), float(np.median(seconds))


@dataclass
class TrainResult:
    state_dict: dict
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    device: str = "cpu"
    seconds: float = 0.0


def train(
    model, train_samples: Samples, val_samples: Samples, config: TrainConfig, num_classes: int
) -> TrainResult:
    """Train with cross-entropy and horizontal flips; keep the epoch with the best val mIoU."""
    import contextlib

    import torch

    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    import segmentation_models_pytorch as smp

    model = model.to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=1e-4)
    # Dice next to cross-entropy: the table and background would otherwise drown the thin classes.
    dice = smp.losses.DiceLoss(mode="multiclass")
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.startswith("cuda") and config.bf16
        else contextlib.nullcontext()
    )
    best: dict | None = None
    best_score, history, best_epoch = -1.0, [], -1
    started = time.perf_counter()
    n = len(train_samples.image_ids)
    for epoch in range(config.epochs):
        model.train()
        order = rng.permutation(n)
        losses = []
        for start in range(0, n, config.batch_size):
            indices = order[start : start + config.batch_size]
            if len(indices) < 2:
                continue  # batch norm needs two samples
            x, y = _to_tensors(train_samples, indices, device, flip=rng.random(len(indices)) < 0.5)
            with autocast:
                logits = model(x).float()
                loss = torch.nn.functional.cross_entropy(logits, y) + dice(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        score = float("nan")
        if len(val_samples.image_ids):
            pred, _, _ = predict(model, val_samples, device, config.bf16)
            score = mean_iou(confusion_matrix(pred, val_samples.labels, num_classes))
        history.append(
            {"epoch": epoch, "loss": float(np.mean(losses)) if losses else float("nan"), "val_miou": score}
        )
        if best is None or (score == score and score > best_score):
            best_score = score if score == score else best_score
            best = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            best_epoch = epoch
    assert best is not None  # the first epoch is always kept
    model.load_state_dict(best)
    return TrainResult(
        state_dict=best,
        history=history,
        best_epoch=best_epoch,
        device=device,
        seconds=time.perf_counter() - started,
    )


@dataclass
class Evaluation:
    confusion: np.ndarray
    per_class_iou: np.ndarray
    miou: float
    pixel_accuracy: float
    latency_ms: float


def evaluate(model, samples: Samples, num_classes: int, device: str, bf16: bool = True) -> Evaluation:
    pred, _, seconds = predict(model, samples, device, bf16)
    cm = confusion_matrix(pred, samples.labels, num_classes)
    return Evaluation(cm, per_class_iou(cm), mean_iou(cm), pixel_accuracy(cm), seconds * 1000.0)


def worst_classes(evaluation: Evaluation, names: list[str], count: int = 3) -> list[str]:
    """'name IoU x (confused with other)' for the lowest-IoU classes."""
    ious = evaluation.per_class_iou
    order = [int(i) for i in np.argsort(np.nan_to_num(ious, nan=2.0))[:count] if not np.isnan(ious[i])]
    out = []
    for class_id in order:
        other = most_confused_with(evaluation.confusion, class_id)
        out.append(
            f"{names[class_id]} IoU {ious[class_id]:.2f}"
            + (f" (confused with {names[other]})" if other is not None else "")
        )
    return out


def state_dict_bytes(state_dict: dict) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    return buffer.getvalue()


@dataclass
class BaselineRun:
    """A trained and measured baseline: what :func:`save_baseline` stores and the UI shows."""

    metrics: dict
    evaluation: Evaluation
    result: TrainResult
    samples: dict[str, int]  # split -> images
    per_class: pd.DataFrame  # class, iou


def train_baseline(store: DatasetStore, taxonomy: Taxonomy, config: TrainConfig) -> BaselineRun:
    """Train on the train split, keep the best val epoch, measure on test (reference labels)."""
    annotations = reference_labels(store)
    samples = {
        split: load_samples(store, images, annotations, config.image_size)
        for split, images in images_by_split(store).items()
    }
    num_classes = len(taxonomy.classes)
    model = build_model(config, num_classes)
    result = train(model, samples["train"], samples["val"], config, num_classes)
    evaluation = evaluate(model, samples["test"], num_classes, result.device, config.bf16)
    names = taxonomy.names
    per_class = pd.DataFrame(
        {"class": names, "iou": [round(float(v), 4) if v == v else None for v in evaluation.per_class_iou]}
    )
    metrics = {
        "miou": round(evaluation.miou, 4),
        "pixel_accuracy": round(evaluation.pixel_accuracy, 4),
        "latency_ms_per_image": round(evaluation.latency_ms, 2),
        "per_class_iou": dict(zip(per_class["class"], per_class.iou, strict=True)),
        "worst_classes": worst_classes(evaluation, names),
        "best_epoch": result.best_epoch,
        "history": result.history,
        "train_seconds": round(result.seconds, 1),
        "device": result.device,
        "images": {s: len(v.image_ids) for s, v in samples.items()},
        "config": {k: getattr(config, k) for k in config.__dataclass_fields__},
        "taxonomy": taxonomy.tag,
    }
    return BaselineRun(
        metrics, evaluation, result, {s: len(v.image_ids) for s, v in samples.items()}, per_class
    )


def save_baseline(store: DatasetStore, run: BaselineRun) -> str:
    """Store the checkpoint and its metrics under the checkpoint's digest, and point
    ``models/baseline/latest.json`` at them; returns the run (the digest)."""
    checkpoint = state_dict_bytes(run.result.state_dict)
    digest = hashlib.sha256(checkpoint).hexdigest()[:12]
    model_key = layout.baseline_checkpoint_key(digest)
    store.write_bytes(model_key, checkpoint)
    store.write_bytes(layout.baseline_metrics_key(digest), json.dumps(run.metrics, indent=2).encode())
    latest = run.metrics | {"checkpoint": model_key}
    store.write_bytes(layout.BASELINE_LATEST_KEY, json.dumps(latest, indent=2).encode())
    return digest


def confusion_png(run: BaselineRun, taxonomy: Taxonomy) -> bytes:
    return png_bytes(confusion_image(run.evaluation.confusion, taxonomy.names))


def load_metrics(store: DatasetStore) -> dict:
    """The latest baseline's metrics (with its ``checkpoint`` key)."""
    return json.loads(store.read_bytes(layout.BASELINE_LATEST_KEY))


def load_trained(
    store: DatasetStore, metrics: dict, num_classes: int
):  # -> (torch.nn.Module, TrainConfig, str)
    """The latest baseline rebuilt from its checkpoint, on its training device when that is
    available here (else the CPU): (model, config, device)."""
    import torch

    config = TrainConfig(
        **{k: v for k, v in metrics["config"].items() if k in TrainConfig.__dataclass_fields__}
    )
    model = build_model(config, num_classes)
    state = torch.load(
        io.BytesIO(store.read_bytes(metrics["checkpoint"])), map_location="cpu", weights_only=True
    )
    model.load_state_dict(state)
    device = metrics["device"] if metrics["device"] == "cpu" or torch.cuda.is_available() else "cpu"
    return model.to(device), config, device


def miou_verdict(metrics: dict, bar: float) -> Verdict:
    """The baseline reaches the mIoU ``bar``; below it, its worst classes are named."""
    passed = metrics["miou"] >= bar
    summary = f"test mIoU {metrics['miou']:.3f} (bar {bar:.2f})"
    if not passed:
        summary += (
            "; worst classes: "
            + "; ".join(metrics["worst_classes"])
            + " - often a sign of inconsistent boundary annotation"
        )
    return Verdict(passed=passed, summary=summary, figures={"miou": metrics["miou"]})

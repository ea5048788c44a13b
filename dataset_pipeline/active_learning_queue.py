"""active_learning_queue: which unlabelled images to label next.

Each pool image is scored by the baseline's mean per-pixel predictive entropy; with
``mc_dropout_passes`` > 1 the dropout layers stay on and the score adds the mean mutual
information between passes (disagreement of the model with itself). Highest first.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dataset_pipeline import layout, schemas
from dataset_pipeline.baseline_model import load_metrics, load_samples, load_trained, predict
from dataset_pipeline.figures import contact_sheet, png_bytes
from dataset_pipeline.images import iter_images
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.taxonomy import Taxonomy

#: Which captured images are ranked: those without reviews yet, or every captured image.
POOLS = ("unreviewed", "all")


def rank(image_ids: list[str], entropy: np.ndarray, disagreement: np.ndarray | None = None) -> pd.DataFrame:
    """Rank images by mean entropy (+ mean disagreement): the most uncertain first.

    >>> rank(["a", "b"], np.array([[[0.1]], [[0.9]]])).image_id.tolist()
    ['b', 'a']
    """
    mean_entropy = entropy.reshape(len(image_ids), -1).mean(axis=1) if len(image_ids) else np.zeros(0)
    mean_disagreement = (
        disagreement.reshape(len(image_ids), -1).mean(axis=1)
        if disagreement is not None
        else np.zeros(len(image_ids))
    )
    table = pd.DataFrame(
        {"image_id": image_ids, "mean_entropy": mean_entropy, "mc_disagreement": mean_disagreement}
    ).assign(score=lambda t: t.mean_entropy + t.mc_disagreement)
    table = table.sort_values(["score", "image_id"], ascending=[False, True]).reset_index(drop=True)
    return table.assign(rank=np.arange(1, len(table) + 1))


def mc_dropout(model, samples, device: str, passes: int) -> tuple[np.ndarray, np.ndarray]:
    """(predictive entropy, mutual information) per pixel over ``passes`` dropout-on passes."""
    import torch

    from dataset_pipeline.baseline_model import _to_tensors

    model.eval()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout | torch.nn.Dropout2d):
            module.train()
    entropies, informations = [], []
    with torch.inference_mode():
        for start in range(0, len(samples.image_ids), 8):
            indices = np.arange(start, min(start + 8, len(samples.image_ids)))
            x, _ = _to_tensors(samples, indices, device)
            probabilities = torch.stack([model(x).float().softmax(dim=1) for _ in range(passes)])
            mean = probabilities.mean(dim=0)
            predictive = -(mean * mean.clamp_min(1e-8).log()).sum(dim=1)
            expected = -(probabilities * probabilities.clamp_min(1e-8).log()).sum(dim=2).mean(dim=0)
            entropies.append(predictive.cpu().numpy())
            informations.append((predictive - expected).clamp_min(0).cpu().numpy())
    model.eval()
    return np.concatenate(entropies), np.concatenate(informations)


def pool_images(store: DatasetStore, pool: str = "unreviewed") -> pd.DataFrame:
    """The captured images to rank: every batch's captures, less the reviewed ones unless ``pool`` is all."""
    if pool not in POOLS:
        raise ValueError(f"unknown active-learning pool {pool!r}; use one of {POOLS}")
    keys = layout.batch_tables(store.list(layout.CAPTURES_PREFIX))
    captured = [store.read_parquet(k) for k in keys]
    images = pd.concat(captured, ignore_index=True) if captured else pd.DataFrame(columns=["image_id"])
    if pool == "unreviewed":
        reviewed = set(store.read_parquet(layout.CORPUS_ANNOTATIONS_KEY).image_id)
        images = images[~images.image_id.isin(reviewed)]
    return images


def build_queue(
    store: DatasetStore, taxonomy: Taxonomy, images: pd.DataFrame, mc_dropout_passes: int = 0
) -> pd.DataFrame:
    """The pool ranked by the latest baseline's uncertainty (:data:`schemas.ACTIVE_LEARNING_QUEUE`)."""
    metrics = load_metrics(store)
    model, config, device = load_trained(store, metrics, len(taxonomy.classes))
    samples = load_samples(store, images, None, config.image_size)
    if len(images) == 0:
        queue = rank([], np.zeros((0,)))
    elif mc_dropout_passes > 1:
        entropy, information = mc_dropout(model, samples, device, mc_dropout_passes)
        queue = rank(samples.image_ids, entropy, information)
    else:
        _, entropy, _ = predict(model, samples, device, config.bf16)
        queue = rank(samples.image_ids, entropy)
    if len(queue):
        queue = queue.merge(images[["image_id", "batch", "uri"]], on="image_id", how="left")
    return queue.reindex(columns=list(schemas.ACTIVE_LEARNING_QUEUE.columns))


def top_png(store: DatasetStore, queue: pd.DataFrame, count: int = 12) -> bytes | None:
    """The first ``count`` images of the queue, captioned with rank and score; None when empty."""
    top = queue.head(count)
    if not len(top):
        return None
    tiles = [rgb for _, rgb in iter_images(store, top)]
    captions = [f"#{r.rank} {r.score:.3f}" for r in top.itertuples()]
    return png_bytes(contact_sheet(tiles, captions, columns=4, cell=240))

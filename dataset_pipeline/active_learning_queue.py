"""active_learning_queue: which unlabelled images to label next.

Each pool image is scored by the baseline's mean per-pixel predictive entropy; with
``mc_dropout_passes`` > 1 the dropout layers stay on and the score adds the mean mutual
information between passes (disagreement of the model with itself). Highest first.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


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

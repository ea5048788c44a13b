"""Metrics known answers, reference-annotation choice, and a training smoke test on tiny images."""

import numpy as np
import pandas as pd
import pytest

from dataset_pipeline.baseline_model import (
    Samples,
    TrainConfig,
    build_model,
    evaluate,
    reference_annotations,
    train,
)
from dataset_pipeline.metrics import (
    confusion_matrix,
    mean_iou,
    most_confused_with,
    per_class_iou,
    pixel_accuracy,
)


def test_metrics_on_hand_built_predictions():
    target = np.array([[0, 0, 1, 1], [0, 2, 2, 2]])
    pred = np.array([[0, 1, 1, 1], [0, 2, 2, 0]])
    cm = confusion_matrix(pred, target, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 2]]
    # class 0: tp 2, fp 1, fn 1 -> 2/4; class 1: tp 2, fp 1 -> 2/3; class 2: tp 2, fn 1 -> 2/3
    assert per_class_iou(cm).tolist() == pytest.approx([0.5, 2 / 3, 2 / 3])
    assert mean_iou(cm) == pytest.approx((0.5 + 2 / 3 + 2 / 3) / 3)
    assert mean_iou(cm, ignore_background=True) == pytest.approx(2 / 3)
    assert pixel_accuracy(cm) == pytest.approx(6 / 8)
    assert most_confused_with(cm, 2) == 0
    absent = per_class_iou(confusion_matrix(np.zeros((2, 2), int), np.zeros((2, 2), int), 3))
    assert absent[0] == 1.0 and np.isnan(absent[1]) and np.isnan(absent[2])


def test_reference_annotations_prefer_review_then_consensus():
    rows = pd.DataFrame(
        {
            "image_id": ["i1", "i1", "i2", "i2", "i3"],
            "annotator_id": ["a", "b", "a", "b", "b"],
            "review_status": ["unreviewed", "peer_reviewed", "unreviewed", "unreviewed", "unreviewed"],
            "review_accepted": pd.array([pd.NA, True, pd.NA, pd.NA, pd.NA], dtype="boolean"),
        }
    )
    chosen = reference_annotations(rows, {"a": 0.95, "b": 0.80})
    assert list(zip(chosen.image_id, chosen.annotator_id, strict=True)) == [
        ("i1", "b"),
        ("i2", "a"),
        ("i3", "b"),
    ]


def _tiny_samples(n: int, size: int = 32, seed: int = 0) -> Samples:
    rng = np.random.default_rng(seed)
    images = np.zeros((n, size, size, 3), np.uint8)
    labels = np.zeros((n, size, size), np.uint8)
    for k in range(n):
        x, y = rng.integers(4, size - 14, 2)
        images[k] = 40
        images[k, y : y + 10, x : x + 10] = (220, 30, 30)
        labels[k, y : y + 10, x : x + 10] = 1
    return Samples([f"i{k}" for k in range(n)], images, labels)


def test_two_training_steps_lower_the_loss():
    config = TrainConfig(
        encoder="mobilenet_v2", image_size=32, epochs=2, batch_size=4, learning_rate=3e-3, device="cpu"
    )
    model = build_model(config, 2)
    samples = _tiny_samples(4)
    result = train(model, samples, samples, config, 2)
    assert len(result.history) == 2
    assert result.history[1]["loss"] < result.history[0]["loss"]
    evaluation = evaluate(model, samples, 2, "cpu")
    assert evaluation.confusion.sum() == 4 * 32 * 32
    assert evaluation.latency_ms > 0

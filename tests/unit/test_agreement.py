"""Agreement metrics: known answers on hand-built masks, the demo's weak annotator, the gating check."""

import numpy as np
import pandas as pd
import pytest

from dataset_pipeline.agreement_report import (
    AgreementSettings,
    boundary_iou,
    compute_agreement,
    majority,
    rle_pair_iou,
)
from dataset_pipeline.masks import encode_mask
from dataset_pipeline.taxonomy import load_taxonomy

TAXONOMY = load_taxonomy()
H, W = 40, 60


def rle(mask: np.ndarray) -> dict:
    return {"size": list(mask.shape), "counts": encode_mask(mask).encode()}


def square(x: int, y: int, size: int = 10) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[y : y + size, x : x + size] = True
    return mask


@pytest.mark.parametrize("k", [0, 1, 2, 5])
def test_squares_offset_by_k_pixels(k):
    # two 10x10 squares, one shifted right by k: overlap (10-k)*10, union (10+k)*10
    assert rle_pair_iou(rle(square(5, 5)), rle(square(5 + k, 5))) == pytest.approx((10 - k) / (10 + k))


def test_boundary_iou_of_offset_squares_by_hand():
    # band d=1 of a 10x10 square is its outer ring (36 px). Shifted by 1 px, the rings share
    # rows 0 and 9 over the 9 common columns: 18 px; union 36 + 36 - 18 = 54.
    assert boundary_iou(rle(square(5, 5)), rle(square(6, 5)), d=1) == pytest.approx(18 / 54)
    assert boundary_iou(rle(square(5, 5)), rle(square(5, 5)), d=1) == 1.0


def test_ring_against_disk():
    yy, xx = np.mgrid[:H, :W]
    r2 = (yy - 20) ** 2 + (xx - 30) ** 2
    disk, ring = r2 <= 15**2, (r2 <= 15**2) & (r2 > 8**2)
    assert rle_pair_iou(rle(ring), rle(disk)) == pytest.approx(ring.sum() / disk.sum())
    # the ring's outer band equals the disk's; its inner band is extra
    band_ring = boundary_iou(rle(ring), rle(disk), d=2)
    assert 0.3 < band_ring < 0.8


def test_empty_against_non_empty_and_empty_pairs():
    empty = np.zeros((H, W), bool)
    assert rle_pair_iou(rle(empty), rle(square(1, 1))) == 0.0
    assert rle_pair_iou(None, rle(square(1, 1))) == 0.0
    assert rle_pair_iou(rle(empty), None) is None
    assert boundary_iou(None, rle(square(1, 1)), d=1) == 0.0


def test_majority_of_three():
    a, b, c = square(0, 0), square(5, 0), square(20, 20)
    vote = majority([rle(a), rle(b), rle(c)], 3)
    from pycocotools import mask as mask_utils

    assert np.array_equal(mask_utils.decode(vote).astype(bool), a & b)  # only where two agree
    assert majority([rle(a), None, None], 3) is None


def _annotations(rows):
    base = {
        "height": H,
        "width": W,
        "z_order": 0,
        "seconds_spent": np.nan,
        "premask_id": None,
        "premask_iou": np.nan,
        "review_accepted": pd.NA,
    }
    return pd.DataFrame([base | r for r in rows])


def test_per_class_report_with_a_class_only_one_annotator_used():
    rows = []
    for image in ("b/i0", "b/i1"):
        rows += [
            {"image_id": image, "annotator_id": "x", "class_id": 1, "rle": encode_mask(square(5, 5))},
            {"image_id": image, "annotator_id": "y", "class_id": 1, "rle": encode_mask(square(6, 5))},
            {"image_id": image, "annotator_id": "x", "class_id": 7, "rle": encode_mask(square(30, 20, 4))},
        ]
    rows.append(
        {"image_id": "b/single", "annotator_id": "x", "class_id": 3, "rle": encode_mask(square(1, 1))}
    )  # not gold
    report = compute_agreement(_annotations(rows), TAXONOMY, AgreementSettings(min_instances=1))
    per_class = report.per_class.set_index("class")
    assert per_class.loc["target_object", "mean_pairwise_iou"] == pytest.approx(9 / 11, abs=1e-4)
    assert per_class.loc["gripper", "mean_pairwise_iou"] == 0.0  # only x drew it
    assert per_class.loc["gripper", "pairs"] == 2
    assert np.isnan(per_class.loc["container", "mean_pairwise_iou"])  # only on a non-gold image
    assert per_class.loc["target_object", "instances"] == 4
    assert not per_class.loc["target_object", "passed"]  # 0.82 < 0.85 (rigid)
    assert set(report.failing_classes()["class"]) == {"target_object", "gripper"}
    assert len(report.per_image) == 2


def test_threshold_overrides_and_minimum_instances():
    rows = [
        {"image_id": "b/i0", "annotator_id": a, "class_id": 1, "rle": encode_mask(square(5 + k, 5))}
        for a, k in (("x", 0), ("y", 1))
    ]
    report = compute_agreement(
        _annotations(rows), TAXONOMY, AgreementSettings(min_instances=1, thresholds={"target_object": 0.8})
    )
    assert report.per_class.set_index("class").loc["target_object", "passed"]
    strict = compute_agreement(_annotations(rows), TAXONOMY, AgreementSettings(min_instances=5))
    assert strict.failing_classes().empty  # 2 instances: too few to judge


def test_demo_weak_annotator_is_flagged_and_the_others_are_not(reviewed_b48):
    _, corpus = reviewed_b48
    report = compute_agreement(corpus.annotations, TAXONOMY, AgreementSettings(boundary=False))
    flags = report.per_annotator.set_index("annotator_id")
    assert flags.loc["ann_c@demo.example", "flagged"]
    assert (
        "velocity" in flags.loc["ann_c@demo.example", "flags"]
        and "unchanged" in flags.loc["ann_c@demo.example", "flags"]
    )
    assert not flags.loc["ann_a@demo.example", "flagged"] and not flags.loc["ann_b@demo.example", "flagged"]
    assert (
        flags.loc["ann_c@demo.example", "iou_vs_consensus"]
        < flags.loc["ann_a@demo.example", "iou_vs_consensus"]
    )
    assert set(report.per_batch.annotator_id) == {
        "ann_a@demo.example",
        "ann_b@demo.example",
        "ann_c@demo.example",
    }


def test_a_pair_where_neither_drew_the_class_does_not_count():
    rows = [
        {"image_id": "b/i0", "annotator_id": "x", "class_id": 8, "rle": encode_mask(square(5, 5))},
        {"image_id": "b/i0", "annotator_id": "y", "class_id": 1, "rle": encode_mask(square(30, 5))},
        {"image_id": "b/i0", "annotator_id": "z", "class_id": 1, "rle": encode_mask(square(30, 5))},
    ]
    per_class = compute_agreement(
        _annotations(rows), TAXONOMY, AgreementSettings(min_instances=1)
    ).per_class.set_index("class")
    assert per_class.loc["human_hand", "pairs"] == 2  # x-y and x-z; y-z never drew a hand
    assert per_class.loc["human_hand", "mean_pairwise_iou"] == 0.0
    # x drew no target_object: x-y and x-z count 0, y-z agree fully
    assert per_class.loc["target_object", "pairs"] == 3 and per_class.loc[
        "target_object", "mean_pairwise_iou"
    ] == pytest.approx(1 / 3, abs=1e-4)


def test_a_flags_reason_sits_beside_the_annotators_name(reviewed_b48):
    """At 1,600 px the per-annotator table's last column was off-screen: the reason comes first."""
    _, corpus = reviewed_b48
    report = compute_agreement(corpus.annotations, TAXONOMY, AgreementSettings(boundary=False))
    assert list(report.per_annotator.columns[:3]) == ["annotator_id", "flagged", "flags"]
    assert {a.split("@")[1] for a in report.per_annotator.annotator_id} == {"demo.example"}  # one form of id

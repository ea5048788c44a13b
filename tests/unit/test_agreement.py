"""Agreement metrics: known answers on hand-built masks, the demo's weak annotator, the gating check."""

import numpy as np
import pandas as pd
import pytest

from dataset_pipeline.agreement_report import (
    AgreementSettings,
    boundary_iou,
    compute_agreement,
    majority,
)
from dataset_pipeline.masks import encode_mask, rle_pair_iou
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


def _random_shapes(rng: np.random.Generator, height: int, width: int, count: int) -> list[np.ndarray]:
    """Blobs of every kind the fast path must handle: touching the image's edges, full-height
    columns (runs that cross columns), holes, thin lines, single pixels."""
    import cv2

    shapes = []
    for k in range(count):
        mask = np.zeros((height, width), np.uint8)
        kind = k % 5
        if kind == 0:  # a polygon, possibly past the edges
            points = rng.integers(-10, [width + 10, height + 10], size=(int(rng.integers(3, 9)), 2))
            cv2.fillPoly(mask, [points.astype(np.int32)], 1)
        elif kind == 1:  # full-height band: foreground runs span several columns
            x0 = int(rng.integers(0, width - 3))
            mask[:, x0 : x0 + int(rng.integers(1, 6))] = 1
        elif kind == 2:  # a ring (a hole)
            cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
            cv2.circle(mask, (cx, cy), int(rng.integers(4, 15)), 1, thickness=int(rng.integers(1, 5)))
        elif kind == 3:  # a thin line
            p, q = rng.integers(0, [width, height], size=(2, 2))
            cv2.line(mask, tuple(int(v) for v in p), tuple(int(v) for v in q), 1, thickness=1)
        else:  # one pixel
            mask[int(rng.integers(0, height)), int(rng.integers(0, width))] = 1
        if mask.any():
            shapes.append(mask.astype(bool))
    return shapes


def test_fast_boundary_iou_equals_the_pairwise_definition():
    """boundary_iou_matrices (the report's path) gives boundary_iou's value for every pair to 1e-9,
    over image sizes, band widths and group sizes in one call."""
    from dataset_pipeline.agreement_report import boundary_iou_matrices

    rng = np.random.default_rng(7)
    compared = 0
    for d in (1, 2, 3, 5):
        groups = []
        for _ in range(40):
            height, width = int(rng.integers(8, 90)), int(rng.integers(8, 120))
            shapes = _random_shapes(rng, height, width, int(rng.integers(2, 7)))
            if len(shapes) >= 2:
                groups.append([rle(m) for m in shapes])
        matrices = boundary_iou_matrices(groups, d)
        assert len(matrices) == len(groups)
        for group, matrix in zip(groups, matrices, strict=True):
            assert matrix.shape == (len(group), len(group))
            for i in range(len(group)):
                for j in range(len(group)):
                    expected = boundary_iou(group[i], group[j], d)
                    assert expected is not None
                    assert matrix[i, j] == pytest.approx(expected, abs=1e-9), (d, i, j)
                    compared += 1
    assert compared > 1000


def test_report_boundary_iou_matches_pairwise_definition():
    """compute_agreement's per-class Boundary IoU equals the mean of boundary_iou over the pairs
    (0 for a pair of whom one drew nothing), chunked or not."""
    from dataset_pipeline import agreement_report

    rng = np.random.default_rng(3)
    rows = []
    expected: dict[int, list[float]] = {}
    people = ["a", "b", "c"]
    for image in range(30):
        shapes = _random_shapes(rng, H, W, 6)
        by_class: dict[int, dict[str, dict]] = {}
        for k, mask in enumerate(shapes):
            annotator, class_id = people[k % 3], 1 + (k // 3) % 2 + (image % 3)
            if image % 7 == 0 and annotator == "c":
                continue  # c skipped these images' classes: pairs with c count 0
            rows.append(
                {
                    "annotation_id": f"{image}-{k}",
                    "image_id": f"b/{image}",
                    "annotator_id": annotator,
                    "class_id": class_id,
                    "height": H,
                    "width": W,
                    "rle": encode_mask(mask),
                    "z_order": k,
                    "seconds_spent": 5.0,
                    "premask_id": None,
                    "premask_iou": np.nan,
                    "review_accepted": pd.NA,
                }
            )
            by_class.setdefault(class_id, {})[annotator] = rle(mask)
        annotators = sorted({p for masks in by_class.values() for p in masks})
        d = AgreementSettings().band(H, W)
        for class_id, masks in by_class.items():
            for i, a in enumerate(annotators):
                for b in annotators[i + 1 :]:
                    value = boundary_iou(masks.get(a), masks.get(b), d)
                    if value is not None:
                        expected.setdefault(class_id, []).append(value)
    table = pd.DataFrame(rows)
    for chunk in (1, 1000):
        agreement_report.BOUNDARY_CHUNK_GROUPS, saved = chunk, agreement_report.BOUNDARY_CHUNK_GROUPS
        try:
            per_class = compute_agreement(table, TAXONOMY).per_class.set_index("class_id")
        finally:
            agreement_report.BOUNDARY_CHUNK_GROUPS = saved
        for class_id, values in expected.items():
            assert per_class.loc[class_id, "boundary_iou"] == pytest.approx(round(float(np.mean(values)), 4))


def test_agreement_per_revision_pair_batch_and_drift():
    """Pairs count under a revision only when both worked under it; a calibration batch has its own
    row; each pair and each annotator's drift over batches are reported."""
    rows = []

    def add(batch, image, annotator, shift, revision, when):
        rows.append(
            {
                "annotation_id": f"{batch}-{image}-{annotator}",
                "image_id": f"{batch}/{image}",
                "annotator_id": annotator,
                "class_id": 1,
                "height": H,
                "width": W,
                "rle": encode_mask(square(5 + shift, 5)),
                "z_order": 0,
                "created_at": pd.Timestamp(when, tz="UTC"),
                "seconds_spent": 5.0,
                "premask_id": None,
                "premask_iou": np.nan,
                "review_accepted": pd.NA,
                "guideline_revision": revision,
            }
        )

    add("b1", "x", "a", 0, 1, "2026-11-01")
    add("b1", "x", "b", 2, 1, "2026-11-01")  # IoU 8/12 under revision 1
    add("b2", "y", "a", 0, 1, "2026-11-08")
    add("b2", "y", "b", 1, 2, "2026-11-08")  # across the revision change: counted in no revision
    add("calibration-2026-11", "z", "a", 0, 2, "2026-11-15")
    add("calibration-2026-11", "z", "b", 0, 2, "2026-11-15")  # IoU 1 under revision 2
    table = pd.DataFrame(rows).astype({"guideline_revision": "Int64"})
    report = compute_agreement(table, TAXONOMY, AgreementSettings(min_instances=1))
    per_revision = report.per_revision.set_index("guideline_revision")
    assert per_revision.loc[1, "mean_pairwise_iou"] == pytest.approx(round(8 / 12, 4))
    assert per_revision.loc[2, "mean_pairwise_iou"] == 1.0 and per_revision.pairs.tolist() == [1, 1]
    gold = report.per_batch_gold.set_index("batch")
    assert list(gold.index) == ["b1", "b2", "calibration-2026-11"]  # in time order
    assert gold.calibration.tolist() == [False, False, True]
    assert gold.loc["b2", "mean_pairwise_iou"] == pytest.approx(round(9 / 11, 4))
    (pair,) = report.per_pair.itertuples()
    assert (pair.annotator_a, pair.annotator_b, pair.comparisons, pair.batches) == ("a", "b", 3, 3)
    drift = report.drift[~report.drift.calibration & (report.drift.annotator_id == "b")]
    assert drift.batch.tolist() == ["b1", "b2"] and drift.drift.iloc[0] == 0.0
    assert drift.drift.iloc[1] > 0  # b's second batch is closer to the consensus than the first

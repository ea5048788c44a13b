"""QC tiers: stratified peer-review and weekly audit samples, stable across re-runs, written as the
tools take them, tracked until the verdicts come back; batch flags."""

from datetime import UTC, datetime

import pandas as pd
import pytest

from dataset_pipeline import layout, schemas
from dataset_pipeline.qc_assignments import (
    BatchQuality,
    QcSettings,
    allocate,
    batch_flags_verdict,
    build_assignments,
    image_work,
    update_batch_qc,
)
from dataset_pipeline.reviewed_annotations import import_batch_reviews
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.taxonomy import load_taxonomy
from tests.conftest import copy_store

TAXONOMY = load_taxonomy()
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_allocate_spreads_the_total_in_proportion():
    quotas = allocate({"a": 50, "b": 30, "c": 20, "d": 0}, 12)
    assert sum(quotas.values()) == 12 and quotas == {"a": 6, "b": 4, "c": 2, "d": 0}
    assert sum(allocate({"x": 1, "y": 1, "z": 1}, 2).values()) == 2


def test_peer_sample_is_stratified_and_the_audit_weekly(reviewed_b48):
    store, corpus = reviewed_b48
    batch = "b48"
    annotations = store.read_parquet(layout.annotations_key(batch))
    captures = store.read_parquet(layout.captures_key(batch))
    table = build_assignments(annotations, captures, batch, QcSettings(auditors=("expert@x",)), None, NOW)
    work = image_work(annotations)
    single = work[work.annotators == 1]
    peer = table[table.tier == "peer_review"]
    assert len(peer) == round(0.12 * len(single))
    assert set(peer.image_id) <= set(single.image_id)  # gold images are checked by agreement instead
    assert (peer.reviewer_id != peer.annotator_id).all() and (peer.reviewer_id != "").all()
    # every annotator's work is in the sample, in proportion (largest remainder: within one image)
    share = single.annotator_id.value_counts() / len(single)
    drawn = peer.annotator_id.value_counts().reindex(share.index, fill_value=0)
    assert (abs(drawn - share * len(peer)) <= 1).all()
    audit = table[table.tier == "expert_audit"]
    for week, units in work.assign(week=work.created_at.dt.strftime("%G-W%V")).groupby("week"):
        assert len(audit[audit.week == week]) == max(1, round(0.05 * len(units)))
    assert set(audit.reviewer_id) == {"expert@x"}
    assert set(table.status) == {"pending"}
    # the same inputs draw the same sample (no random state)
    again = build_assignments(annotations, captures, batch, QcSettings(auditors=("expert@x",)), None, NOW)
    pd.testing.assert_frame_equal(table, again)


def test_a_sample_is_kept_and_topped_up_as_images_arrive(reviewed_b48):
    store, _ = reviewed_b48
    batch = "b48"
    annotations = store.read_parquet(layout.annotations_key(batch))
    captures = store.read_parquet(layout.captures_key(batch))
    half = annotations[annotations.image_id.isin(sorted(annotations.image_id.unique())[:24])]
    early = build_assignments(half, captures, batch, QcSettings(), None, NOW)
    later = build_assignments(annotations, captures, batch, QcSettings(), early, NOW.replace(day=2))
    kept = later.merge(early[["image_id", "tier", "annotator_id"]], how="inner")
    assert len(kept) == len(early)  # nothing drawn before is dropped
    assert len(later) > len(early)


def test_verdicts_come_back_through_the_sheets(reviewed_b48, tmp_path):
    source, _ = reviewed_b48
    store = copy_store(source, DatasetStore(str(tmp_path / "store")))
    batch = "b48"
    first = update_batch_qc(store, batch, QcSettings(), NOW)
    files = layout.qc_task_files(batch)
    sheet = pd.read_csv(store.path(files["peer_review_sheet"]), dtype=str, keep_default_na=False)
    assert list(sheet.columns) == list(schemas.PEER_REVIEW.columns) and (sheet.accepted == "").all()
    views = pd.read_json(store.path(files["label_studio_views"]))
    assert len(views) == first.assignments.groupby(["tier", "reviewer_id"]).ngroups
    jobs = pd.read_json(store.path(files["cvat_jobs"]))
    assert sum(len(f) for f in jobs.frames) == len(first.assignments)
    assert first.quality.figures["pending_verdicts"] == len(first.assignments)

    # the reviewers fill in the sheet (half rejected) and drop it into the review folder
    sheet["accepted"] = ["true" if i % 2 else "false" for i in range(len(sheet))]
    sheet.loc[0, "accepted"] = ""  # one not done yet
    store.put_upload(layout.peer_review_key(batch), sheet.to_csv(index=False).encode())
    table = import_batch_reviews(store, batch, TAXONOMY).annotations
    store.write_parquet(layout.annotations_key(batch), table)
    second = update_batch_qc(store, batch, QcSettings(), NOW)
    peer = second.assignments[second.assignments.tier == "peer_review"]
    assert (peer.status == "pending").sum() == 1
    assert (peer.status == "accepted").sum() == sum(sheet.accepted == "true")
    expected = (sheet.accepted == "true").sum() / (sheet.accepted != "").sum()
    assert second.quality.figures["first_pass_acceptance"] == pytest.approx(expected, abs=1e-4)
    pd.testing.assert_frame_equal(
        second.assignments[["image_id", "tier", "annotator_id"]],
        first.assignments[["image_id", "tier", "annotator_id"]],
    )


@pytest.mark.parametrize(
    ("acceptance", "ratio", "flagged", "words"),
    [
        (0.9, 1.1, False, "within norms"),
        (0.7, 1.0, True, "first-pass acceptance 70%"),
        (0.95, 2.4, True, "2.4x"),
    ],
)
def test_batch_flags(acceptance, ratio, flagged, words):
    figures = {
        "first_pass_acceptance": acceptance,
        "peer_verdicts": 10,
        "time_ratio": ratio,
        "median_seconds_per_image": 60.0 * ratio,
        "team_median_seconds_per_image": 60.0,
        "pending_verdicts": 0,
    }
    verdict = batch_flags_verdict("b1", BatchQuality(figures), QcSettings())
    assert verdict.passed is not flagged and words in verdict.summary

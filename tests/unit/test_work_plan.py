"""The team's work plan: each batch's gold images to a pair of annotators, the pairs rotating."""

import json
from collections import Counter

import pandas as pd

from dataset_pipeline import layout
from dataset_pipeline.annotation_tasks import (
    TeamSettings,
    next_pair,
    plan_work,
    read_work_plan,
    write_work_plan,
)
from dataset_pipeline.demo import simulate_review
from dataset_pipeline.demo.review import ANNOTATORS
from dataset_pipeline.demo.upload import write_demo_upload
from dataset_pipeline.raw_captures import ingest_batch
from dataset_pipeline.reviewed_annotations import import_batch_reviews
from dataset_pipeline.sam2_premasks import premask_batch
from dataset_pipeline.sam2_premasks.classical import ClassicalBackend
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.taxonomy import load_taxonomy

ROSTER = ("ann_a", "ann_b", "ann_c")


def _captures(batch: str, n: int) -> pd.DataFrame:
    ids = [f"{batch}/{i:04d}" for i in range(n)]
    return pd.DataFrame({"image_id": ids, "uri": [f"incoming/{batch}/images/{i:04d}.png" for i in range(n)]})


def test_the_pair_with_fewest_batches_goes_next_and_every_pair_gets_its_turn():
    earlier: list[tuple[str, ...]] = []
    for _ in range(6):
        earlier.append(next_pair(ROSTER, earlier))
    assert earlier[:3] == [("ann_a", "ann_b"), ("ann_a", "ann_c"), ("ann_b", "ann_c")]
    assert Counter(earlier) == {("ann_a", "ann_b"): 2, ("ann_a", "ann_c"): 2, ("ann_b", "ann_c"): 2}
    # two batches planned at once got the same pair: the next one evens it out
    assert next_pair(ROSTER, [("ann_a", "ann_b"), ("ann_b", "ann_a")]) == ("ann_a", "ann_c")
    # a new member joins the roster: the pairs with them have had no batch, so they come first
    assert "ann_d" in next_pair((*ROSTER, "ann_d"), earlier)


def test_gold_goes_to_the_pair_and_the_rest_to_one_person_each_in_turn():
    captures = _captures("b1", 50)
    files = [f"images/{i:04d}.png" for i in range(50)]
    plan = plan_work(list(captures.image_id), files, "b1", TeamSettings(ROSTER), ("ann_a", "ann_c"))
    per_image = plan.groupby("image_id").annotator_id.agg(sorted)
    gold = plan[plan.role == "gold"]
    assert gold.image_id.nunique() == 10  # 20% of 50
    assert all(per_image[i] == ["ann_a", "ann_c"] for i in gold.image_id.unique())
    single = plan[plan.role == "single"]
    assert single.image_id.nunique() == 40 and not single.image_id.duplicated().any()
    assert set(single.image_id).isdisjoint(gold.image_id)
    counts = single.annotator_id.value_counts()
    assert set(counts.index) == set(ROSTER) and counts.max() - counts.min() <= 1
    assert plan.image_id.drop_duplicates().tolist() == list(captures.image_id)  # the batch's order
    # drawn by a stable rank: the same plan on every run, another batch draws other images
    again = plan_work(list(captures.image_id), files, "b1", TeamSettings(ROSTER), ("ann_a", "ann_c"))
    pd.testing.assert_frame_equal(plan, again)
    other = plan_work(list(captures.image_id), files, "b2", TeamSettings(ROSTER), ("ann_a", "ann_c"))
    assert set(other.image_id[other.role == "gold"]) != set(gold.image_id)


def test_a_calibration_round_is_everyone_on_every_image_and_takes_no_turn(local_store: DatasetStore):
    team = TeamSettings(ROSTER)
    calibration = write_work_plan(
        local_store, "calibration-2026-12", _captures("calibration-2026-12", 20), team
    )
    assert calibration is not None and calibration.pair == ()
    assert len(calibration.plan) == 60 and set(calibration.plan.role) == {"calibration"}
    assert calibration.plan.groupby("image_id").annotator_id.nunique().eq(3).all()
    first = write_work_plan(local_store, "b1", _captures("b1", 10), team)
    assert first is not None and first.pair == ("ann_a", "ann_b")  # the round did not use a turn


def test_the_rotation_over_stored_batches_and_a_rerun_keeps_its_pair(local_store: DatasetStore):
    team = TeamSettings(ROSTER)
    pairs = {}
    for batch in ("b1", "b2", "b3", "b4"):
        plan = write_work_plan(local_store, batch, _captures(batch, 10), team)
        assert plan is not None
        pairs[batch] = plan.pair
    assert list(pairs.values()) == [
        ("ann_a", "ann_b"),
        ("ann_a", "ann_c"),
        ("ann_b", "ann_c"),
        ("ann_a", "ann_b"),
    ]
    # b2 again, with more images sent (the propagated frames' keyframes grew): same pair, same gold
    before = read_work_plan(local_store, "b2")
    rerun = write_work_plan(local_store, "b2", _captures("b2", 12), team)
    assert rerun is not None and rerun.pair == ("ann_a", "ann_c")
    assert before is not None
    pd.testing.assert_frame_equal(rerun.plan.iloc[: len(before)], before, check_dtype=False)
    assert rerun.plan.image_id.nunique() == 12 and set(rerun.plan.image_id[len(before) :]) == {
        "b2/0010",
        "b2/0011",
    }
    assert set(rerun.plan[rerun.plan.role == "gold"].annotator_id) == {"ann_a", "ann_c"}
    record = json.loads(local_store.read_bytes(layout.team_files("b2")["pair"]))
    assert record["pair"] == ["ann_a", "ann_c"] and record["roster"] == list(ROSTER)


def test_saved_filters_and_cvat_jobs_name_each_annotators_images(local_store: DatasetStore):
    captures = _captures("b1", 10)
    task_ids = {image_id: 100 + n for n, image_id in enumerate(captures.image_id)}
    plan = write_work_plan(local_store, "b1", captures, TeamSettings(ROSTER), task_ids)
    assert plan is not None
    views = {v["data"]["title"]: v for v in plan.views}
    jobs = {j["assignee"]: j for j in json.loads(local_store.read_bytes(plan.files["cvat_jobs"]))}
    for person in ROSTER:
        mine = plan.plan[plan.plan.annotator_id == person]
        items = views[f"Labelling b1: {person}"]["data"]["filters"]["items"]
        assert sorted(i["value"] for i in items) == sorted(task_ids[i] for i in mine.image_id)
        assert {i["filter"] for i in items} == {"filter:tasks:id"}
        assert jobs[person]["frames"] == [f"images/{i[-4:]}.png" for i in mine.image_id]
        assert set(jobs[person]["gold_frames"]) == set(
            f"images/{i[-4:]}.png" for i in mine.image_id[mine.role == "gold"]
        )
    # without a live server the filters select on the tasks' image_id field
    offline = write_work_plan(local_store, "b1", captures, TeamSettings(ROSTER))
    assert offline is not None
    assert {i["filter"] for v in offline.views for i in v["data"]["filters"]["items"]} == {
        "filter:tasks:data.image_id"
    }


def test_no_roster_no_plan(local_store: DatasetStore):
    assert write_work_plan(local_store, "b1", _captures("b1", 4), TeamSettings()) is None
    assert read_work_plan(local_store, "b1") is None


def test_the_simulated_team_labels_to_the_plan(local_store: DatasetStore):
    """The demo's annotators follow the plan: each gold image has exactly its batch's pair in the
    imported annotations, every other image the one person planned."""
    batch, taxonomy = "b30", load_taxonomy()
    write_demo_upload(local_store, batch, n_images=30, seed=0)
    captures = ingest_batch(local_store, batch).captures
    local_store.write_parquet(layout.captures_key(batch), captures)
    premasks = premask_batch(local_store, batch, ClassicalBackend(), taxonomy=taxonomy).table
    local_store.write_parquet(layout.premasks_key(batch), premasks)
    team = TeamSettings(tuple(a.annotator_id for a in ANNOTATORS))
    local_store.write_bytes(  # an earlier batch had the first pair: this one gets the next
        layout.team_files("earlier")["pair"],
        json.dumps({"batch": "earlier", "pair": list(team.annotators[:2])}).encode(),
    )
    plan = write_work_plan(local_store, batch, captures, team)
    assert plan is not None and plan.pair == (team.annotators[0], team.annotators[2])
    review = simulate_review(local_store, batch, seed=0)
    annotations = import_batch_reviews(local_store, batch, taxonomy).annotations
    who = annotations.groupby("image_id").annotator_id.agg(lambda s: sorted(set(s)))
    planned = plan.plan.groupby("image_id").annotator_id.agg(sorted)
    labelled = who.index  # images where someone drew something
    assert (who == planned.loc[labelled]).all()
    assert review.gold_images == plan.plan.image_id[plan.plan.role == "gold"].nunique()

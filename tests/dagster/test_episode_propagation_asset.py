"""Keyframes out first, episode_propagation through Dagster, the correction round back in, the gate."""

import json

import pytest
from dagster import instance_for_test, materialize

from assets.annotation_tasks import annotation_tasks
from assets.episode_propagation import EPISODE_PROPAGATION_CHECKS, episode_propagation
from assets.partitions import capture_batches
from assets.raw_captures import raw_captures
from assets.reviewed_annotations import reviewed_annotations
from assets.sam2_premasks import sam2_premasks
from dataset_pipeline import layout
from dataset_pipeline.demo import simulate_corrections, simulate_review, write_demo_upload
from dataset_pipeline.store import DatasetStore
from resources import (
    AgreementRules,
    AnnotationTeam,
    AnnotationToolsResource,
    CaptureRules,
    DatasetStoreResource,
    LabelStudioResource,
    PropagationSettings,
    RobotEnvironments,
    Sam2Resource,
    TaxonomyResource,
)

BATCH = "episodes"


def _resources(store, propagation=None):
    return {
        "dataset_store": DatasetStoreResource(root_url=store.root_url),
        "capture_rules": CaptureRules(),
        "robot_environments": RobotEnvironments(),
        "propagation": propagation or PropagationSettings(),
        "taxonomy": TaxonomyResource(),
        "sam2": Sam2Resource(),
        "annotation_tools": AnnotationToolsResource(),
        "label_studio": LabelStudioResource(),
        "annotation_team": AnnotationTeam(),
        "agreement_rules": AgreementRules(),
    }


def _materialize(store, assets, instance, propagation=None):
    return materialize(
        assets,
        partition_key=BATCH,
        instance=instance,
        resources=_resources(store, propagation),
        raise_on_error=False,
    )


@pytest.fixture(scope="module")
def propagated(tmp_path_factory):
    """Two 14-frame episodes: captured, pre-masked, keyframes reviewed, propagated, corrected, re-imported."""
    store = DatasetStore(str(tmp_path_factory.mktemp("episodes") / "store"))
    write_demo_upload(store, BATCH, n_images=28, seed=4, frames_per_episode=14, with_depth=False)
    with instance_for_test() as instance:
        instance.add_dynamic_partitions(capture_batches.name, [BATCH])
        first = _materialize(store, [raw_captures, sam2_premasks, annotation_tasks], instance)
        assert first.success
        tasks = json.loads(store.read_bytes(layout.task_files(BATCH)["label_studio_tasks"]))
        simulate_review(store, BATCH, seed=1, gold_share=0.0)
        second = _materialize(
            store, [reviewed_annotations, episode_propagation, *EPISODE_PROPAGATION_CHECKS], instance
        )
        assert second.success
        simulate_corrections(store, BATCH, seed=1)
        third = _materialize(store, [reviewed_annotations], instance)
        assert third.success
    return store, tasks, first, second


def test_only_the_keyframes_go_out_first(propagated):
    store, tasks, first, _ = propagated
    keyframes = store.read_parquet(layout.keyframes_key(BATCH))
    chosen = set(keyframes.image_id[keyframes.keyframe])
    assert {t["data"]["image_id"] for t in tasks} == chosen
    for _, episode in keyframes.groupby("episode_id"):
        flags = list(episode.sort_values("position").keyframe)
        assert flags[0] and flags[-1] and 3 <= sum(flags) < len(flags)
    metadata = first.asset_materializations_for_node("annotation_tasks")[0].metadata
    assert metadata["keyframes"].value == len(chosen) and metadata[
        "frames_after_propagation"
    ].value == 28 - len(chosen)


def test_propagation_records_its_provenance_and_goes_back_as_predictions(propagated):
    store, _, _, second = propagated
    table = store.read_parquet(layout.propagated_key(BATCH))
    keyframes = store.read_parquet(layout.keyframes_key(BATCH))
    between = set(keyframes.image_id[~keyframes.keyframe])
    assert set(table.image_id) == between
    assert set(table.backend) == {"flow"} and table.model_version.str.startswith("opencv-").all()
    assert (table.distance >= 1).all() and table.score.between(0, 1).all()
    assert table.source_keyframes.map(
        lambda s: set(s.split(",")) <= set(keyframes.image_id[keyframes.keyframe])
    ).all()
    metadata = second.asset_materializations_for_node("episode_propagation")[0].metadata
    assert metadata["frames_propagated"].value == len(between) and metadata["episodes_propagated"].value == 2
    correction = json.loads(store.read_bytes(layout.propagated_task_files(BATCH)["label_studio_tasks"]))
    assert {t["data"]["image_id"] for t in correction} == between
    assert all(t["predictions"][0]["result"] for t in correction)
    checks = {e.check_name: e.passed for e in second.get_asset_check_evaluations()}
    assert checks == {
        "propagated_masks_temporally_consistent": True,
        "propagated_masks_do_not_flicker": checks["propagated_masks_do_not_flicker"],
    }
    consistency = store.read_parquet(layout.temporal_consistency_key(BATCH))
    assert set(consistency.episode_id) == set(keyframes.episode_id) and consistency.passed.all()
    assert store.exists(layout.worst_transitions_preview(BATCH))


def test_corrections_come_back_as_propagated_or_corrected(propagated):
    store, *_ = propagated
    annotations = store.read_parquet(layout.annotations_key(BATCH))
    keyframes = store.read_parquet(layout.keyframes_key(BATCH))
    between = annotations[annotations.image_id.isin(set(keyframes.image_id[~keyframes.keyframe]))]
    kinds = set(between.assistance)
    assert "propagated" in kinds and "propagated-corrected" in kinds
    assert between[between.assistance == "propagated"].premask_iou.min() >= 0.99
    assert between[between.assistance.str.startswith("propagated")].premask_id.str.startswith("prop-").all()
    on_keyframes = annotations[annotations.image_id.isin(set(keyframes.image_id[keyframes.keyframe]))]
    assert not on_keyframes.assistance.str.startswith("propagated").any()


def test_a_consistency_floor_the_episode_cannot_meet_blocks(propagated):
    store, *_ = propagated
    strict = PropagationSettings(
        consistency_thresholds={"rigid": 0.999, "surface": 0.999, "deformable": 0.999, "thin": 0.999}
    )
    with instance_for_test() as instance:
        instance.add_dynamic_partitions(capture_batches.name, [BATCH])
        result = _materialize(store, [episode_propagation, *EPISODE_PROPAGATION_CHECKS], instance, strict)
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    gate = checks["propagated_masks_temporally_consistent"]
    assert not gate.passed and "under their floor" in gate.description
    assert "consistency_thresholds" in gate.description

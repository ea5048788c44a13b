"""dataset_release and dataset_card as Dagster assets: checks, immutability, blocking, the nightly schedule."""

from __future__ import annotations

import json
import os

import pandas as pd
from dagster import AssetKey, AssetMaterialization, DagsterInstance, build_schedule_context, materialize

from assets.dataset_card import dataset_card
from assets.dataset_release import DATASET_RELEASE_CHECKS, dataset_release
from dataset_pipeline import dataset_release as release
from dataset_pipeline import layout
from dataset_pipeline.agreement_report import compute_agreement
from dataset_pipeline.annotation_corpus import update_corpus
from dataset_pipeline.definitions.environment import build_resources
from dataset_pipeline.definitions.schedules import nightly_release_schedule
from dataset_pipeline.layout import (
    AGREEMENT_TABLES,
    CORPUS_ANNOTATIONS_KEY,
    CORPUS_IMAGES_KEY,
    QUALITY_ISSUES_KEY,
    QUALITY_SUMMARY_KEY,
    SPLITS_KEY,
)
from dataset_pipeline.quality_report import run_quality_checks
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.taxonomy import load_taxonomy
from tests.conftest import demo_corpus


def _prepare(store: DatasetStore, plant_class: int | None = None) -> None:
    """The tables the release reads, from a demo corpus (ground truth as one annotator's labels)."""
    images, annotations, splits = demo_corpus(store, "ra-b1", 12)
    if plant_class is not None:
        annotations.loc[int(annotations.z_order.idxmax()), "class_id"] = plant_class
    # the batch's tables, then the corpus made from them as annotation_corpus makes it (its batch
    # parts are what quality_report and dataset_splits read)
    store.write_parquet(layout.captures_key("ra-b1"), images)
    store.write_parquet(layout.annotations_key("ra-b1"), annotations)
    update_corpus(store)
    store.write_parquet(SPLITS_KEY, splits)
    taxonomy = load_taxonomy()
    report = compute_agreement(annotations, taxonomy)
    for name, key in AGREEMENT_TABLES.items():
        store.write_parquet(key, getattr(report, name))
    quality = run_quality_checks(annotations, images, taxonomy)
    store.write_parquet(QUALITY_ISSUES_KEY, quality.issues)
    store.write_bytes(QUALITY_SUMMARY_KEY, json.dumps({"checked": quality.checked}).encode())


def _materialize(store: DatasetStore, instance: DagsterInstance):
    return materialize(
        [dataset_release, dataset_card, *DATASET_RELEASE_CHECKS],
        resources=build_resources(store.root),
        instance=instance,
        raise_on_error=False,
    )


def test_release_and_card_complete_once_and_never_rewrite(tmp_path):
    store = DatasetStore(str(tmp_path / "store"))
    _prepare(store)
    with DagsterInstance.ephemeral() as instance:
        first = _materialize(store, instance)
        assert first.success
        checks = {e.check_name: e.passed for e in first.get_asset_check_evaluations()}
        assert set(checks) == {spec.name for c in DATASET_RELEASE_CHECKS for spec in c.check_specs}
        assert all(checks.values()), checks
        (version,) = release.list_releases(store)
        manifest = json.loads(store.read_bytes(f"releases/{version}/release.json"))
        card = store.read_bytes(f"releases/{version}/DATASHEET.md").decode()
        assert "## Quality" in card and "Model-training grant" in card and version in card
        assert {
            "provenance/images.csv",
            "provenance/annotations.parquet",
            "stats/mask_area_histogram.png",
            "annotations/instances_train.json",
            "data.yaml",
            "hdf5/test.h5",
            "lerobot/train/meta/info.json",
            "episodes/index.csv",
        } <= set(manifest["files"])
        provenance = store.read_parquet(f"releases/{version}/provenance/annotations.parquet")
        assert set(provenance.assistance) == {"auto"} and provenance.annotator_id.notna().all()
        folder = store.path(f"releases/{version}")
        stamps = {f: os.stat(os.path.join(d, f)).st_mtime_ns for d, _, fs in os.walk(folder) for f in fs}
        second = _materialize(store, instance)
        assert second.success
        metadata = {
            e.asset_key.path[-1]: e.materialization.metadata
            for e in second.get_asset_materialization_events()
        }
        assert metadata["dataset_release"]["version"].value == version
        assert (
            metadata["dataset_release"]["reused"].value is True and metadata["dataset_card"]["reused"].value
        )
        assert stamps == {
            f: os.stat(os.path.join(d, f)).st_mtime_ns for d, _, fs in os.walk(folder) for f in fs
        }


def test_a_class_outside_the_taxonomy_blocks_the_card(tmp_path):
    store = DatasetStore(str(tmp_path / "store"))
    _prepare(store, plant_class=42)
    with DagsterInstance.ephemeral() as instance:
        result = _materialize(store, instance)
        failed = {e.check_name: e.description for e in result.get_asset_check_evaluations() if not e.passed}
        assert "class_id 42" in failed["class_ids_consistent"]
        assert "category_id 42" in failed["coco_reloads"]
        assert not result.get_asset_materialization_events() or all(
            e.asset_key != AssetKey("dataset_card") for e in result.get_asset_materialization_events()
        )
    assert release.list_releases(store) == []  # never visible as complete


def _tick(instance: DagsterInstance):
    """One evaluation of the nightly schedule; the context is closed after it (a context left
    open keeps a reference to the instance in the schedule definition that later tests reuse)."""
    with build_schedule_context(instance=instance) as context:
        return nightly_release_schedule(context)


def test_nightly_schedule_runs_only_after_a_new_review(tmp_path):
    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        assert "no batch has been reviewed" in _tick(instance).skip_message
        instance.report_runless_asset_event(AssetMaterialization("reviewed_annotations", partition="b1"))
        request = _tick(instance)
        assert request.run_key.startswith("nightly-release:")
        assert request.tags["dataset_pipeline/uses-gpu"] == "true"  # the corpus job trains the baseline
        again = _tick(instance)
        assert again.run_key == request.run_key  # a re-evaluated tick asks for the same run, never a second
        instance.report_runless_asset_event(AssetMaterialization("dataset_card"))
        assert "no batch reviewed since" in _tick(instance).skip_message
        instance.report_runless_asset_event(AssetMaterialization("reviewed_annotations", partition="b2"))
        assert _tick(instance).run_key != request.run_key


def test_split_shares_the_scenes_cannot_meet_warn_and_the_release_follows(tmp_path):
    """A small corpus in few leakage groups cannot make 70/15/15: split_shares_on_target says so
    as a warning naming the closest reachable shares, and the release and the card still run
    (the issue-18 case: a second batch of the same scenes stopped the corpus job)."""
    from assets.dataset_splits import DATASET_SPLITS_CHECKS, dataset_splits

    store = DatasetStore(str(tmp_path / "store"))
    _prepare(store)
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            [dataset_splits, *DATASET_SPLITS_CHECKS, dataset_release, dataset_card, *DATASET_RELEASE_CHECKS],
            resources=build_resources(store.root),
            instance=instance,
            raise_on_error=False,
        )
        evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    shares = evaluations["split_shares_on_target"]
    assert not shares.passed and shares.severity.value == "WARN", shares.description
    assert "as close as the data allows: 3 leakage groups" in (shares.description or "")
    assert evaluations["splits_no_leakage"].passed
    assert result.success
    assert {e.asset_key.path[-1] for e in result.get_asset_materialization_events()} >= {
        "dataset_splits",
        "dataset_release",
        "dataset_card",
    }
    (version,) = release.list_releases(store)
    assert release.is_complete(store, version)


def test_the_release_fans_out_one_step_per_shard_and_the_next_release_shares_the_unchanged(tmp_path):
    """dataset_release runs as steps the executor can spread: one plan step, one export step per
    shard (per split and batch) and per format made from the whole release (episode HDF5, LeRobot,
    RLDS), one assembly step after all of them. A second release after a new
    batch makes the new batch's shards and shares every other shard's bytes with the first."""
    store = DatasetStore(str(tmp_path / "store"))
    _prepare(store)
    with DagsterInstance.ephemeral() as instance:
        first = _materialize(store, instance)
        assert first.success
        steps = {e.step_key for e in first.all_node_events if e.step_key and e.is_step_success}
        content, _ = release.load_release(store, load_taxonomy(), list(release.DEFAULT_FORMATS), {})
        shards = release.release_shards(content)
        exports = {s for s in steps if s.startswith("dataset_release.export_release_shard[shard_")}
        assert len(exports) == len(shards) >= 3
        # the formats made from the whole release are steps of their own beside the shards
        assert {
            f"dataset_release.export_release_whole[{name}]" for name in release.WHOLE_RELEASE_STEPS
        } <= steps
        assert {"dataset_release.plan_release_shards", "dataset_release.assemble_release"} <= steps
        # each shard and each of those formats is checked in a step of its own as soon as it is
        # written; the blocking checks add those verdicts up
        assert {s.replace("export_release_shard", "check_release_shard") for s in exports} | {
            f"dataset_release.check_release_whole[{name}]" for name in release.WHOLE_RELEASE_STEPS
        } <= steps
        evaluations = {e.check_name: e for e in first.get_asset_check_evaluations()}
        beside = {
            name: evaluations[f"{name}_reloads"].metadata["parts_checked_beside_exports"].value
            for name in ("yolo_seg", "semantic_png", "hdf5", "episode_hdf5", "lerobot", "coco")
        }
        assert beside == {
            "yolo_seg": len(shards),
            "semantic_png": len(shards),
            "hdf5": len(shards),
            "episode_hdf5": 1,
            "lerobot": 1,
            "coco": len(shards),
        }
        metadata = first.asset_materializations_for_node("dataset_release")[0].metadata
        assert metadata["shards"].value == len(shards) and metadata["files_shared"].value == 0
        version = metadata["version"].value

        images, annotations, splits = demo_corpus(store, "ra-b2", 4)
        for key, frame in (
            (CORPUS_IMAGES_KEY, images),
            (CORPUS_ANNOTATIONS_KEY, annotations),
            (SPLITS_KEY, splits),
        ):
            store.write_parquet(key, pd.concat([store.read_parquet(key), frame], ignore_index=True))
        second = _materialize(store, instance)
        assert second.success and len(release.list_releases(store)) == 2
        metadata = second.asset_materializations_for_node("dataset_release")[0].metadata
        assert metadata["files_shared"].value > 0 and metadata["shared_with"].value == f"releases/{version}"
        new_version = metadata["version"].value
        index = store.read_parquet(f"releases/{new_version}/index.parquet")
        shard_rows = index[index.unit.str.startswith("shard:")]
        assert set(shard_rows.unit[shard_rows.reused].str.contains("/ra-b1-")) == {True}
        assert not shard_rows.unit[~shard_rows.reused].str.contains("/ra-b1-").any()


def test_a_failed_shard_step_re_executed_from_failure_completes_the_release_with_each_shard_once(
    tmp_path, monkeypatch
):
    """A shard's step fails (one of its images is missing from the store; so do the steps of the
    formats made from the whole release) while the other shards' steps, each in its own process,
    finish; Dagster's re-execution from failure (what the
    daemon's run retries launch) runs the failed shard, the assembly and the checks, and not the
    shards that were done: the release has every shard once and reads back whole."""
    from dagster import ReexecutionOptions, build_reconstructable_job, execute_job

    store = DatasetStore(str(tmp_path / "store"))
    _prepare(store)
    # the step processes load the code location, whose store is the environment's
    monkeypatch.setenv("DATASET_PIPELINE_STORE", store.root)
    splits = store.read_parquet(SPLITS_KEY)
    images = store.read_parquet(CORPUS_IMAGES_KEY)
    lost = images[images.image_id == splits[splits.split == "test"].image_id.iloc[0]].uri.iloc[0]
    kept_aside = tmp_path / "aside.jpg"
    os.replace(store.path(lost), kept_aside)
    job = build_reconstructable_job(
        "dataset_pipeline.definitions.launcher", "resolved_job", reconstructable_args=("corpus_job",)
    )
    release_only = [AssetKey("dataset_release")]
    (tmp_path / "home").mkdir()
    with DagsterInstance.local_temp(str(tmp_path / "home")) as instance:
        with execute_job(job, instance, asset_selection=release_only, raise_on_error=False) as first:
            assert not first.success
            failed = {e.step_key for e in first.all_events if e.is_step_failure}
            done = {e.step_key for e in first.all_events if e.is_step_success}
            run_id = first.run_id
        exports = {s for s in done | failed if ".export_release_" in s}
        shards = {s for s in exports if "[shard_" in s}
        # the shard holding the image fails, and so do the formats made from the whole release
        assert len(failed & shards) == 1 and len(shards - failed) >= 2, (failed, done)
        assert failed - shards == {s for s in exports if "export_release_whole[" in s}, failed
        os.replace(kept_aside, store.path(lost))
        again = ReexecutionOptions.from_failure(run_id, instance)
        with execute_job(job, instance, reexecution_options=again, raise_on_error=False) as second:
            assert second.success
            ran = {e.step_key for e in second.all_events if e.is_step_success}
            checks = {e.check_name: e.passed for e in second.get_asset_check_evaluations()}
            beside = {
                e.check_name.removesuffix("_reloads"): e.metadata["parts_checked_beside_exports"].value
                for e in second.get_asset_check_evaluations()
                if "parts_checked_beside_exports" in e.metadata
            }
            (made,) = second.get_asset_materialization_events()
            version = made.materialization.metadata["version"].value
    assert failed <= ran and not (ran & (exports - failed)), ran  # the done shards were not made again
    assert "dataset_release.assemble_release" in ran and checks and all(checks.values()), checks
    # the done shards' checks did not run again either: the re-execution's checks took their
    # verdicts from the first run, and every shard's from one run or the other
    assert not {s for s in ran if "check_release_shard" in s} & {
        s.replace("export_release_shard", "check_release_shard") for s in exports - failed
    }
    assert beside["semantic_png"] == len(shards), beside
    content, _ = release.load_release(store, load_taxonomy(), list(release.DEFAULT_FORMATS), {})
    index = store.read_parquet(f"releases/{version}/index.parquet")
    assert not index.file.duplicated().any()
    assert all(
        store.exists(layout.release_part_key(version, s, n)) for s, n in release.release_shards(content)
    )
    lost_id = images[images.uri == lost].image_id.iloc[0]
    assert (
        index[index.unit == lost_id].format.nunique() >= 3
    )  # the failed shard's image is in, in each format

"""`dataset-pipeline demo`, end to end in a subprocess, as the README runs it."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dagster import AssetKey, DagsterInstance, SensorResult, build_sensor_context

from dataset_pipeline.dataset_release import list_releases
from dataset_pipeline.definitions.sensors import review_export_sensor
from dataset_pipeline.layout import annotations_key, captures_key, premasks_key
from dataset_pipeline.store import DatasetStore
from resources import DatasetStoreResource
from tests.conftest import demo_command, strict_taxonomy


def test_demo_command_runs_the_pipeline_and_records_runs(tmp_path):
    cli = Path(sys.executable).with_name("dataset-pipeline")
    store_dir, home = tmp_path / "store", tmp_path / "home"
    out = subprocess.run(demo_command(store_dir, home), capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "[1/" in out.stdout and "raw_captures [demo-s0-n120]: ok" in out.stdout
    assert "images=120" in out.stdout
    assert "baseline_model: ok" in out.stdout and "miou=" in out.stdout
    assert "check captures_table_expectations: passed" in out.stdout
    assert str(store_dir) in out.stdout

    store = DatasetStore(str(store_dir))
    assert len(store.read_parquet(captures_key("demo-s0-n120"))) == 120
    instance = DagsterInstance.from_config(str(home))
    assert instance.get_materialized_partitions(AssetKey("raw_captures")) == {
        "demo-s0-n120",
        "demo-s0-n120-robot",
        "demo-s0-n120-pool",
    }
    assert instance.get_latest_materialization_event(AssetKey("baseline_model")) is not None
    assert (home / "dagster.yaml").exists()
    # one run per stage; only the runs of a GPU stage count against the queue's GPU-run limit
    gpu = {
        "sam2_premasks",
        "episode_propagation",
        "baseline_model",
        "zero_shot_comparison",
        "active_learning_queue",
    }
    runs = instance.get_runs()
    assert len(runs) == 30
    for run in runs:
        stage = run.tags["dataset_pipeline/stage"]
        assert (run.tags.get("dataset_pipeline/uses-gpu") == "true") is (stage in gpu), stage
    # The reviewed demo corpus ends in one complete release whose every format read back equal.
    assert "dataset_card: ok" in out.stdout and "_reloads: FAILED" not in out.stdout
    for fmt in ("coco", "yolo_seg", "semantic_png", "hdf5", "lerobot", "episode_hdf5", "rlds", "write_back"):
        assert f"check {fmt}_reloads: passed" in out.stdout
    (version,) = list_releases(store)
    # The demo robot's LeRobot dataset (lerobot's recorder), sampled and reviewed, is in the release
    # again as a LeRobot dataset with its class maps: write_back_reloads loaded it with LeRobotDataset.
    assert "logged 2 episodes (48 frames) as a LeRobot v3.0 dataset" in out.stdout
    # Its 24-frame episodes were labelled on their keyframes, propagated, and the rest corrected.
    assert "simulated annotators checked 36 propagated frames" in out.stdout
    assert "check propagated_masks_temporally_consistent: passed" in out.stdout
    robot_labels = store.read_parquet(annotations_key("demo-s0-n120-robot"))
    assert {"propagated", "propagated-corrected"} <= set(robot_labels.assistance)
    card = store.read_bytes(f"releases/{version}/DATASHEET.md").decode()
    assert "propagated from keyframes and accepted" in card
    robot = store.list(f"releases/{version}/robot_datasets/demo-s0-n120-robot", recursive=True)
    assert any(k.endswith("meta/info.json") for k in robot) and any(k.endswith(".mp4") for k in robot)
    info = json.loads(
        store.read_bytes(f"releases/{version}/robot_datasets/demo-s0-n120-robot/meta/info.json")
    )
    assert info["features"]["observation.segmentation"] == {
        "dtype": "uint8",
        "shape": [480, 640],
        "names": ["height", "width"],
    }
    assert len(store.read_parquet(captures_key("demo-s0-n120-robot"))) == 48
    # The team's guideline: two revisions, the second adopted half-way through the first batch, each
    # with its example pictures; every annotation traced to one; agreement shown per revision.
    revisions = json.loads(store.read_bytes("guidelines/revisions.json"))
    assert [r["revision"] for r in revisions] == [1, 2]
    assert "class gripper: boundary, edge_cases" in revisions[1]["changes"]
    examples = store.read_parquet("guidelines/r002/examples.parquet")
    assert {"correct", "incorrect"} <= set(examples.kind)
    assert all(store.exists(f"guidelines/r002/{f}") for f in examples.file)
    corpus = store.read_parquet("tables/corpus/annotations.parquet")
    main = corpus[corpus.image_id.str.startswith("demo-s0-n120/")]
    assert set(main.guideline_revision.dropna()) == {1, 2} and main.guideline_revision.notna().all()
    per_revision = store.read_parquet("tables/agreement/per_revision.parquet")
    assert set(per_revision.guideline_revision) == {1, 2}
    assert (
        "Annotation guideline revisions in force: r1" in card
        and "#### Agreement per class and guideline" in card
    )
    # The QC samples were written, the verdicts came back for the first batch, and the card quotes them.
    qc = store.read_parquet("tables/qc/demo-s0-n120.parquet")
    assert set(qc.tier) == {"peer_review", "expert_audit"} and (qc.status != "pending").all()
    assert "simulated reviewers returned" in out.stdout and "check batch_within_norms:" in out.stdout
    assert "- Peer review: " in card and "audit pass rate" in card
    assert f"release {version}: complete ({store_dir}/releases/{version}/release.json)" in out.stdout
    assert f"{store_dir}/releases/latest.json names it" in out.stdout
    # `dagster dev` on this store and home afterwards: the review sensor's first tick (no cursor)
    # finds the demo's review files already imported and starts nothing.
    tick = review_export_sensor(
        build_sensor_context(
            instance=instance, resources={"dataset_store": DatasetStoreResource(root_url=str(store_dir))}
        )
    )
    assert isinstance(tick, SensorResult) and tick.run_requests == []
    assert "reviews/demo-s0-n120/" in (tick.cursor or "")
    card = store.read_bytes(f"releases/{version}/DATASHEET.md").decode()
    assert "ann_a" in card and "sam2-assisted" in card  # the simulated annotators' provenance
    assert (
        "Batch `demo-s0-n120-robot`: frames sampled (every frame) from a lerobot v3.0 dataset (robot so100"
        in card
    )
    instance.dispose()

    # Writing the same demo upload again reuses it: raw files are never rewritten.
    manifest = store.read_bytes("incoming/demo-s0-n120/manifest.csv")
    again = subprocess.run(
        [str(cli), "demo-data", "--images", "120", "--seed", "0", "--out", str(store_dir)],
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "reusing it" in again.stdout
    assert store.read_bytes("incoming/demo-s0-n120/manifest.csv") == manifest


def test_bad_batch_name_is_a_clear_error(tmp_path):
    cli = Path(sys.executable).with_name("dataset-pipeline")
    out = subprocess.run(
        [str(cli), "demo-data", "--out", str(tmp_path), "--batch", "../escape"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "batch name '../escape' is not allowed" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_stricter_taxonomy_stops_the_demo_at_the_agreement_gate_and_says_why(tmp_path):
    """A team whose taxonomy asks 0.90 IoU on the gripper (the demo's annotators reach about 0.8 on
    60 images): the blocking agreement check stops the run before the corpus stages, naming the
    setting that decided it and what it holds back, without a stack trace."""
    taxonomy = strict_taxonomy(tmp_path)
    command = demo_command(tmp_path / "store", tmp_path / "home")
    command[command.index("--images") + 1] = "60"
    environment = os.environ | {"DATASET_PIPELINE_TAXONOMY": str(taxonomy)}
    out = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=environment)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "check agreement_meets_thresholds: FAILED" in out.stdout and "gripper" in out.stdout
    assert "Decided by agreement_rules" in out.stdout
    assert "it holds back" in out.stdout and "dataset_splits" in out.stdout
    assert "dataset_splits: ok" not in out.stdout and "baseline_model: ok" not in out.stdout
    for text in (out.stdout, out.stderr):
        assert "Traceback" not in text and "Stack Trace" not in text


def test_ctrl_c_during_a_stage_stops_the_demo_with_status_130(tmp_path):
    """SIGINT while sam2_premasks runs: the stage is not retried (it was, under Dagster's
    RetryPolicy), the command ends with 130 and names the stage; its table was not written."""
    store_dir = tmp_path / "store"
    process = subprocess.Popen(
        demo_command(store_dir, tmp_path / "home"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("[1/"):  # raw_captures is done: sam2_premasks (about 10 s here) starts
            break
    time.sleep(1.5)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stdout + stderr
    assert "interrupted during sam2_premasks [demo-s0-n120]" in stderr
    assert "[2/" not in stdout and "Traceback" not in stderr
    assert not DatasetStore(str(store_dir)).exists(premasks_key("demo-s0-n120"))

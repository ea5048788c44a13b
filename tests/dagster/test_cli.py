"""`dataset-pipeline demo`, end to end in a subprocess, as the README runs it."""

import subprocess
import sys
from pathlib import Path

from dagster import AssetKey, DagsterInstance

from dataset_pipeline.dataset_release import list_releases
from dataset_pipeline.layout import captures_key
from dataset_pipeline.store import DatasetStore
from tests.conftest import demo_command


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
        "demo-s0-n120-pool",
    }
    assert instance.get_latest_materialization_event(AssetKey("baseline_model")) is not None
    assert (home / "dagster.yaml").exists()
    # one run per stage; only the runs of a GPU stage count against the queue's GPU-run limit
    gpu = {"sam2_premasks", "baseline_model", "zero_shot_comparison", "active_learning_queue"}
    runs = instance.get_runs()
    assert len(runs) == 16
    for run in runs:
        stage = run.tags["dataset_pipeline/stage"]
        assert (run.tags.get("dataset_pipeline/uses-gpu") == "true") is (stage in gpu), stage
    # The reviewed demo corpus ends in one complete release whose every format read back equal.
    assert "dataset_card: ok" in out.stdout and "_reloads: FAILED" not in out.stdout
    for fmt in ("coco", "yolo_seg", "semantic_png", "hdf5", "lerobot", "episode_hdf5"):
        assert f"check {fmt}_reloads: passed" in out.stdout
    (version,) = list_releases(store)
    card = store.read_bytes(f"releases/{version}/DATASHEET.md").decode()
    assert "ann_a" in card and "sam2-assisted" in card  # the simulated annotators' provenance
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

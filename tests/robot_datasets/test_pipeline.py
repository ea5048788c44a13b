"""Robot-dataset batches through the Dagster assets: raw_captures samples them (RLDS via Dagster Pipes)."""

from __future__ import annotations

import shutil

from dagster import DagsterInstance, materialize

from assets.partitions import CAPTURE_BATCHES
from assets.raw_captures import RAW_CAPTURES_CHECKS, raw_captures
from dataset_pipeline import layout
from dataset_pipeline.definitions.environment import build_resources
from dataset_pipeline.store import DatasetStore
from tests.robot_datasets.aloha import write_aloha


def _materialize(store_root, batch):
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(CAPTURE_BATCHES, [batch])
    result = materialize(
        [raw_captures, *RAW_CAPTURES_CHECKS], partition_key=batch, resources=build_resources(str(store_root)),
        instance=instance, raise_on_error=False,
    )  # fmt: skip
    return result, [entry.user_message for entry in instance.all_logs(result.run_id)]


def test_an_rlds_upload_is_sampled_through_pipes_and_ingested_with_its_source_pointers(rlds_root, tmp_path):
    store = DatasetStore(str(tmp_path / "s"))
    shutil.copytree(rlds_root, tmp_path / "s/incoming/rl")
    store.put_upload(layout.upload_complete_key("rl"), b'{"cameras": ["image"], "every": 3}')
    result, logs = _materialize(tmp_path / "s", "rl")
    assert result.success
    captures = store.read_parquet(layout.captures_key("rl"))
    assert captures.frame_index.tolist() == [0, 3] * 3
    assert captures.source_episode.tolist() == [0, 0, 1, 1, 2, 2]
    assert set(captures.camera_model) == {"image"} and set(captures.lighting) == {"unknown"}
    assert captures.uri.iloc[0] == "frames/rl/image/episode_000000/frame_000000.png"
    (event,) = result.get_asset_materialization_events()
    robot = event.materialization.metadata["robot dataset"].value
    assert robot["kind"] == "rlds" and robot["episodes"] == 3 and robot["settings"]["every"] == 3
    # the worker ran as a Dagster Pipes session of the step: its opening is in the run's log
    assert any("[pipes] external process successfully opened dagster pipes" in m for m in logs), logs


def test_a_quarantined_episode_becomes_a_quarantine_row_naming_it(tmp_path):
    import h5py

    store = DatasetStore(str(tmp_path / "s"))
    root = write_aloha(tmp_path / "s/incoming/al", episodes=3)
    with h5py.File(root / "episode_2.hdf5", "a") as handle:
        handle["observations/elsewhere"] = h5py.ExternalLink("other.h5", "/x")
    store.put_upload(
        layout.upload_complete_key("al"), b'{"every": 5, "cameras": ["observations/images/cam_high"]}'
    )
    result, _ = _materialize(tmp_path / "s", "al")
    quarantine = store.read_parquet(layout.quarantine_key("al"))
    assert quarantine.image_file.tolist() == ["episode 2"]
    assert quarantine.reason.iloc[0].startswith(
        "episode 2 (episode_2.hdf5): /observations/elsewhere is an external link"
    )
    assert len(store.read_parquet(layout.captures_key("al"))) == 4
    # one quarantined row is under min_quarantined_to_block: the batch goes on, the check names it
    (check,) = [
        e for e in result.get_asset_check_evaluations() if e.check_name == "quarantine_share_under_limit"
    ]
    assert check.passed and "episode 2" in check.description

"""LeRobot datasets written by lerobot: sampled into an upload batch, written back, read back by lerobot."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tests.robot_datasets.conftest import (
    CAMERA,
    EPISODES,
    FRAMES,
    annotations_for,
    drawn_frame,
    frame_id,
    read_back,
    run_cli,
    truth_map,
    write_lerobot,
)


def _frame(store_root: Path, batch: str, image_file: str) -> np.ndarray:
    return np.asarray(Image.open(store_root / "frames" / batch / image_file).convert("RGB"))


def test_ingest_of_an_av1_dataset_samples_every_nth_frame_with_its_source_pointer(lerobot_av1, tmp_path):
    code, out, err = run_cli(
        "ingest", str(lerobot_av1), "--out", str(tmp_path / "s"), "--batch", "lr", "--every", "3"
    )
    assert code == 0, err
    assert "lerobot v3.0 dataset: 3 episodes, fps 10.0, robot so100" in out
    for episode in range(EPISODES):
        assert f"  episode {episode}: 4 frames" in out  # 0, 3, 6, 9
    manifest = pd.read_csv(tmp_path / "s/frames/lr/manifest.csv")
    assert {"episode_index", "frame_index", "image_file", "timestamp"} <= set(manifest.columns)
    assert manifest.frame_index.tolist() == [0, 3, 6, 9] * EPISODES
    assert manifest.episode_index.tolist() == [e for e in range(EPISODES) for _ in range(4)]
    assert manifest.timestamp.tolist() == pytest.approx([f / 10 for f in (0, 3, 6, 9)] * EPISODES)
    assert set(manifest.camera_model) == {CAMERA}
    for row in manifest.itertuples():
        decoded = _frame(tmp_path / "s", "lr", row.image_file).astype(int)
        # AV1 is lossy: the decoded frame is close to what the robot logged, not equal.
        assert np.abs(decoded - drawn_frame(row.episode_index, row.frame_index)).mean() < 6
    source = json.loads((tmp_path / "s/frames/lr/source.json").read_text())
    assert (source["kind"], source["version"], source["robot_type"], source["fps"]) == (
        "lerobot",
        "v3.0",
        "so100",
        10.0,
    )
    assert source["tasks"] == ["pick the box 0", "pick the box 1"]
    # the dataset itself is in the upload, as the robot wrote it
    assert (tmp_path / "s/incoming/lr/meta/info.json").read_bytes() == (
        lerobot_av1 / "meta/info.json"
    ).read_bytes()
    assert (tmp_path / "s/incoming/lr/UPLOAD_COMPLETE").exists()


def test_image_features_come_out_exactly_as_logged(lerobot_images, tmp_path):
    code, _, err = run_cli(
        "ingest", str(lerobot_images), "--out", str(tmp_path / "s"), "--batch", "li", "--every", "1"
    )
    assert code == 0, err
    manifest = pd.read_csv(tmp_path / "s/frames/li/manifest.csv")
    assert len(manifest) == EPISODES * FRAMES
    for row in manifest.itertuples():
        assert np.array_equal(
            _frame(tmp_path / "s", "li", row.image_file), drawn_frame(row.episode_index, row.frame_index)
        )


@pytest.mark.parametrize("vcodec", ["h264", "hevc"])
def test_h264_and_hevc_videos_decode_at_a_target_fps(vcodec, tmp_path):
    root = write_lerobot(tmp_path / vcodec, vcodec=vcodec)
    assert (
        json.loads((root / "meta/info.json").read_text())["features"][CAMERA]["info"]["video.codec"] == vcodec
    )
    code, _, err = run_cli("ingest", str(root), "--out", str(tmp_path / "s"), "--batch", "c", "--fps", "5")
    assert code == 0, err
    manifest = pd.read_csv(tmp_path / "s/frames/c/manifest.csv")
    assert manifest.frame_index.tolist() == [0, 2, 4, 6, 8] * EPISODES
    for row in manifest.itertuples():
        decoded = _frame(tmp_path / "s", "c", row.image_file).astype(int)
        assert np.abs(decoded - drawn_frame(row.episode_index, row.frame_index)).mean() < 6


def test_write_back_adds_class_maps_and_flags_and_keeps_everything_else(lerobot_av1, tmp_path):
    code, _, err = run_cli(
        "ingest", str(lerobot_av1), "--out", str(tmp_path / "s"), "--batch", "wb", "--every", "2"
    )
    assert code == 0, err
    labelled = [(0, 2), (1, 0), (1, 4), (2, 8)]
    table = annotations_for(
        [frame_id("wb", CAMERA, e, f) for e, f in labelled], [truth_map(e, f) for e, f in labelled]
    )
    table.to_parquet(tmp_path / "annotations.parquet")
    out = tmp_path / "augmented"
    code, stdout, err = run_cli(
        "write-back", str(tmp_path / "s/incoming/wb"), "--annotations", str(tmp_path / "annotations.parquet"),
        "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    assert (
        f"{EPISODES} episodes, {EPISODES * FRAMES} frames, 4 labelled ({EPISODES * FRAMES - 4} flagged none)"
        in stdout
    )
    info = json.loads((out / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    assert info["features"]["observation.segmentation"]["dtype"] == "uint8"
    assert info["features"]["observation.segmentation"]["shape"] == [96, 128]
    # The videos are copied, not re-encoded.
    for video in (lerobot_av1 / "videos").rglob("*.mp4"):
        assert (out / video.relative_to(lerobot_av1)).read_bytes() == video.read_bytes()

    written = read_back("lerobot", str(out), "test/robot", tmp_path=tmp_path)
    original = read_back("lerobot", str(lerobot_av1), "test/robot", tmp_path=tmp_path)
    assert len(written["frame_index"]) == EPISODES * FRAMES
    for i, (episode, frame) in enumerate(zip(written["episode_index"], written["frame_index"], strict=True)):
        episode, frame = int(episode), int(frame)
        expected = (
            truth_map(episode, frame) if (episode, frame) in labelled else np.zeros((96, 128), np.uint8)
        )
        assert np.array_equal(written["observation.segmentation"][i], expected), (episode, frame)
        assert int(written["observation.segmentation_source"][i]) == (
            1 if (episode, frame) in labelled else 0
        )
    for key in ("observation.state", "action", "timestamp", "episode_index", "frame_index"):
        assert np.array_equal(written[key], original[key]), key
    assert set(original["features"]) < set(written["features"])


def test_a_written_back_dataset_is_refused_as_a_new_upload(lerobot_av1, tmp_path):
    store = tmp_path / "s"
    run_cli("ingest", str(lerobot_av1), "--out", str(store), "--batch", "a", "--every", "5")
    frame = frame_id("a", CAMERA, 0, 0)
    annotations_for([frame], [truth_map(0, 0)]).to_parquet(tmp_path / "t.parquet")
    code, _, err = run_cli(
        "write-back",
        str(store / "incoming/a"),
        "--annotations",
        str(tmp_path / "t.parquet"),
        "--out",
        str(tmp_path / "aug"),
    )
    assert code == 0, err
    code, _, err = run_cli("ingest", str(tmp_path / "aug"), "--out", str(store), "--batch", "again")
    assert code == 1
    assert "already has a segmentation feature" in err and "Traceback" not in err
    assert not (store / "incoming/again").exists() and not (store / "frames/again").exists()


def _copy(root: Path, tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(root, target)
    return target


def test_an_unknown_codebase_version_is_refused_naming_the_field_and_nothing_is_stored(lerobot_av1, tmp_path):
    root = _copy(lerobot_av1, tmp_path, "v9")
    info = json.loads((root / "meta/info.json").read_text())
    (root / "meta/info.json").write_text(json.dumps(info | {"codebase_version": "v9.0"}))
    code, _, err = run_cli("ingest", str(root), "--out", str(tmp_path / "s"), "--batch", "v9")
    assert code == 1
    assert "field 'codebase_version' is 'v9.0'" in err and "Traceback" not in err
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").rglob("*.*"))


def test_an_episode_whose_data_file_is_missing_is_quarantined_and_the_others_go_on(lerobot_av1, tmp_path):
    root = _copy(lerobot_av1, tmp_path, "gone")
    episodes_file = root / "meta/episodes/chunk-000/file-000.parquet"
    table = pq.read_table(episodes_file).to_pandas()
    table.loc[table.episode_index == 2, "data/file_index"] = 7  # meta points at a file that is not there
    table.to_parquet(episodes_file)
    code, out, err = run_cli(
        "ingest", str(root), "--out", str(tmp_path / "s"), "--batch", "g", "--every", "5"
    )
    assert code == 0, err
    assert "episode 0: 2 frames" in out and "episode 1: 2 frames" in out
    assert "episode 2: quarantined" in out and "data file data/chunk-000/file-007.parquet is missing" in out
    manifest = pd.read_csv(tmp_path / "s/frames/g/manifest.csv")
    assert sorted(set(manifest.episode_index)) == [0, 1]


def test_a_truncated_video_quarantines_the_episodes_it_no_longer_holds(lerobot_av1, tmp_path):
    root = _copy(lerobot_av1, tmp_path, "cut")
    video = next((root / "videos").rglob("*.mp4"))
    data = video.read_bytes()
    video.write_bytes(data[: len(data) * 2 // 3])
    code, out, err = run_cli(
        "ingest", str(root), "--out", str(tmp_path / "s"), "--batch", "t", "--every", "1"
    )
    assert "Traceback" not in err
    assert "quarantined" in out
    assert f"field {CAMERA}" in out
    source = json.loads((tmp_path / "s/frames/t/source.json").read_text())
    assert source["quarantined_episodes"]
    reasons = " ".join(source["quarantined_episodes"].values())
    assert "cannot be decoded" in reasons or "has no frame at" in reasons
    # what the manifest holds is only whole, readable episodes
    if code == 0:
        manifest = pd.read_csv(tmp_path / "s/frames/t/manifest.csv")
        assert all((manifest.episode_index == e).sum() == FRAMES for e in set(manifest.episode_index))


def test_the_release_s_lerobot_export_loads_in_lerobotdataset_with_the_png_masks(tmp_path):
    from dataset_pipeline import dataset_release as release
    from dataset_pipeline.formats.release_content import ReleaseContent
    from dataset_pipeline.store import DatasetStore
    from dataset_pipeline.taxonomy import load_taxonomy
    from tests.conftest import demo_corpus

    store = DatasetStore(str(tmp_path / "store"))
    images, annotations, splits = demo_corpus(store, "lr-rel", 12)
    content = ReleaseContent(store, load_taxonomy(), images, annotations, splits, info={"name": "t"})
    version = release.release_version(content, ["lerobot", "semantic_png"])
    release.write_exports(content, version, ["lerobot", "semantic_png"])
    folder = tmp_path / f"store/releases/{version}"
    by_id = {row.image_id: row for row in content.images.itertuples(index=False)}
    seen = 0
    for split in content.splits:  # a dataset per split
        root = folder / "lerobot" / split
        loaded = read_back("lerobot", str(root), f"release/lerobot-{split}", tmp_path=tmp_path)
        frames = pq.read_table(root / "meta/frames.parquet").to_pandas()
        assert len(loaded["observation.segmentation"]) == len(frames) == len(content.split_images(split))
        for index, image_id in zip(frames["index"], frames.image_id, strict=True):
            assert by_id[image_id].split == split
            png = np.asarray(Image.open(folder / f"masks/{split}/{image_id.replace('/', '__')}.png"))
            assert np.array_equal(loaded["observation.segmentation"][index].astype(np.uint8), png)
        seen += len(frames)
    assert seen == 12


def test_a_dataset_without_its_video_file_is_refused_with_every_episode_named(lerobot_av1, tmp_path):
    root = _copy(lerobot_av1, tmp_path, "novideo")
    for video in (root / "videos").rglob("*.mp4"):
        video.unlink()
    code, out, err = run_cli(
        "ingest", str(root), "--out", str(tmp_path / "s"), "--batch", "nv", "--every", "5"
    )
    assert code == 1 and "Traceback" not in err
    for episode in range(EPISODES):
        assert (
            f"episode {episode}: quarantined - episode {episode}, field {CAMERA}: video videos/{CAMERA}/chunk-000/file-000.mp4 is missing"
            in out
        )

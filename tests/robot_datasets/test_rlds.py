"""RLDS datasets written by a TFDS builder: sampled, written back, exported; read back by tensorflow-datasets."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from PIL import Image

from dataset_pipeline import dataset_release as release
from dataset_pipeline.formats.release_content import ReleaseContent
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.taxonomy import load_taxonomy
from tests.conftest import demo_corpus, require_environment
from tests.robot_datasets.conftest import annotations_for, frame_id, read_back, run_cli, truth_map

TFDS_DIR = "toy_rlds/1.0.0"


def test_ingest_reads_steps_through_tfds_with_episode_and_step_indices(rlds_root, tmp_path):
    code, out, err = run_cli("ingest", str(rlds_root), "--out", str(tmp_path / "s"), "--batch", "r", "--every", "2",
                             "--camera", "image")  # fmt: skip
    assert code == 0, err
    assert "rlds 1.0.0 dataset: 3 episodes, fps not given" in out
    manifest = pd.read_csv(tmp_path / "s/frames/r/manifest.csv")
    assert manifest.frame_index.tolist() == [0, 2, 4] * 3
    assert manifest.episode_index.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    steps = read_back("tfds", str(rlds_root / TFDS_DIR), tmp_path=tmp_path)
    # the library's own decoding of each sampled step equals our PNG of it (PNG source: lossless)
    order = [(s, e) for s, e in zip(steps["split"], steps["episode"], strict=True)]
    episode_of = {
        key: i for i, key in enumerate(dict.fromkeys(order))
    }  # split-name order, as ingest numbers them
    for row in manifest.itertuples():
        index = [i for i, key in enumerate(order) if episode_of[key] == row.episode_index][row.frame_index]
        got = np.asarray(Image.open(tmp_path / "s/frames/r" / row.image_file).convert("RGB"))
        assert np.array_equal(got, steps["observation/image"][index])
    source = json.loads((tmp_path / "s/frames/r/source.json").read_text())
    assert source["tasks"] == ["put the cup 0 in the sink", "put the cup 1 in the sink"]
    assert source["splits"] == {"train": 2, "val": 1}


def test_write_back_adds_a_segmentation_mask_per_step_and_keeps_every_value(rlds_root, tmp_path):
    run_cli(
        "ingest",
        str(rlds_root),
        "--out",
        str(tmp_path / "s"),
        "--batch",
        "w",
        "--camera",
        "image",
        "--every",
        "1",
    )
    labelled = [(0, 1), (2, 5)]
    annotations_for(
        [frame_id("w", "image", e, f) for e, f in labelled], [truth_map(e, f) for e, f in labelled]
    ).to_parquet(tmp_path / "a.parquet")
    code, out, err = run_cli("write-back", str(tmp_path / "s/incoming/w"), "--annotations", str(tmp_path / "a.parquet"),
                             "--out", str(tmp_path / "aug"))  # fmt: skip
    assert code == 0, err
    assert "3 episodes, 18 frames, 2 labelled (16 flagged none)" in out
    before = read_back("tfds", str(rlds_root / TFDS_DIR), tmp_path=tmp_path)
    after = read_back("tfds", str(tmp_path / "aug" / TFDS_DIR), tmp_path=tmp_path)
    assert {"segmentation_mask", "segmentation_source"} <= set(after["features"])
    numbered = {
        key: i for i, key in enumerate(dict.fromkeys(zip(after["split"], after["episode"], strict=True)))
    }
    for i, (split, episode, step) in enumerate(
        zip(after["split"], after["episode"], after["step"], strict=True)
    ):
        index = numbered[(split, episode)]
        expected = (
            truth_map(index, int(step)) if (index, int(step)) in labelled else np.zeros((96, 128), np.uint8)
        )
        assert np.array_equal(after["observation/segmentation_mask"][i], expected)
        assert int(after["observation/segmentation_source"][i]) == (
            1 if (index, int(step)) in labelled else 0
        )
    for key in ("observation/image", "observation/wrist_image", "observation/state", "action", "reward", "is_first",
                "is_last", "split", "episode", "step"):  # fmt: skip
        assert np.array_equal(after[key], before[key]), key


def test_the_release_as_rlds_reads_back_through_tfds_with_every_class_map(tmp_path):
    require_environment("tfds")
    store = DatasetStore(str(tmp_path / "store"))
    images, annotations, splits = demo_corpus(store, "rl-b1", 16)
    content = ReleaseContent(store, load_taxonomy(), images, annotations, splits, info={"name": "t"})
    version = release.release_version(content, ["rlds"])
    release.write_exports(content, version, ["rlds"])
    assert release.validate_format(content, version, "rlds") == []
    written = read_back("tfds", str(tmp_path / f"store/releases/{version}/rlds/dataset_pipeline_release/1.0.0"),
                        tmp_path=tmp_path)  # fmt: skip
    by_id = {row.image_id: row for row in content.images.itertuples(index=False)}
    assert sorted(str(i, "utf-8") if isinstance(i, bytes) else str(i) for i in written["image_id"]) == sorted(
        by_id
    )
    for image_id, mask in zip(written["image_id"], written["observation/segmentation_mask"], strict=True):
        image_id = image_id.decode() if isinstance(image_id, bytes) else str(image_id)
        assert np.array_equal(mask, content.class_map(by_id[image_id]))
    assert set(np.asarray(written["observation/segmentation_source"]).tolist()) == {1}


def test_a_missing_shard_refuses_the_dataset_naming_the_split_and_nothing_is_stored(rlds_root, tmp_path):
    import shutil

    root = tmp_path / "broken"
    shutil.copytree(rlds_root, root)
    (root / TFDS_DIR / "toy_rlds-val.tfrecord-00000-of-00001").unlink()
    code, _, err = run_cli("ingest", str(root), "--out", str(tmp_path / "s"), "--batch", "gone")
    assert code == 1
    assert "split 'val'" in err and "the shards cannot be read" in err and "Traceback" not in err
    assert not (tmp_path / "s/incoming/gone").exists()

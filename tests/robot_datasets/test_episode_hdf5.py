"""ALOHA-layout episode HDF5 (h5py): sampled, written back into a copy, refused when hostile."""

from __future__ import annotations

import shutil

import cv2
import h5py
import numpy as np
import pandas as pd
from PIL import Image

from tests.robot_datasets.aloha import CAMERAS, write_aloha
from tests.robot_datasets.conftest import annotations_for, drawn_frame, frame_id, run_cli, truth_map

HIGH = f"observations/images/{CAMERAS[0]}"


def test_ingest_takes_every_camera_frame_exactly_and_numbers_episodes_by_file(tmp_path):
    root = write_aloha(tmp_path / "aloha")
    code, out, err = run_cli(
        "ingest", str(root), "--out", str(tmp_path / "s"), "--batch", "al", "--every", "4"
    )
    assert code == 0, err
    assert "episode_hdf5 aloha dataset: 2 episodes" in out
    manifest = pd.read_csv(tmp_path / "s/frames/al/manifest.csv")
    assert sorted(set(manifest.camera_model)) == [f"observations/images/{c}" for c in CAMERAS]
    assert manifest.frame_index.tolist() == [0, 4, 8] * 4
    for row in manifest.itertuples():
        got = np.asarray(Image.open(tmp_path / "s/frames/al" / row.image_file).convert("RGB"))
        expected = drawn_frame(row.episode_index, row.frame_index)
        assert np.array_equal(got, expected if row.camera_model == HIGH else expected[::-1])


def test_compressed_aloha_rows_decode_as_the_jpeg_they_hold(tmp_path):
    root = write_aloha(tmp_path / "aloha", compress=True)
    code, _, err = run_cli(
        "ingest", str(root), "--out", str(tmp_path / "s"), "--batch", "cz", "--camera", HIGH
    )
    assert code == 0, err
    manifest = pd.read_csv(tmp_path / "s/frames/cz/manifest.csv")
    assert manifest.frame_index.tolist() == [0] * 2  # no fps in ALOHA's files: every 10th frame
    with h5py.File(root / "episode_1.hdf5") as handle:
        row = handle[HIGH][0]
    expected = cv2.imdecode(row, cv2.IMREAD_COLOR)[:, :, ::-1]
    got = np.asarray(Image.open(tmp_path / "s/frames/cz" / manifest.image_file.iloc[1]).convert("RGB"))
    assert np.array_equal(got, expected)


def test_write_back_adds_the_class_maps_beside_the_images_and_changes_nothing_else(tmp_path):
    root = write_aloha(tmp_path / "aloha")
    run_cli(
        "ingest", str(root), "--out", str(tmp_path / "s"), "--batch", "w", "--every", "2", "--camera", HIGH
    )
    labelled = [(0, 2), (1, 6)]
    annotations_for(
        [frame_id("w", HIGH, e, f) for e, f in labelled], [truth_map(e, f) for e, f in labelled]
    ).to_parquet(tmp_path / "a.parquet")
    code, out, err = run_cli("write-back", str(tmp_path / "s/incoming/w"), "--annotations", str(tmp_path / "a.parquet"),
                             "--out", str(tmp_path / "aug"))  # fmt: skip
    assert code == 0, err
    for episode in (0, 1):
        with (
            h5py.File(root / f"episode_{episode}.hdf5") as before,
            h5py.File(tmp_path / f"aug/episode_{episode}.hdf5") as after,
        ):
            maps, flags = (
                after["observations/images/segmentation"],
                after["observations/images/segmentation_source"],
            )
            assert (maps.shape, maps.dtype, flags.shape, flags.dtype) == (
                (10, 96, 128),
                np.uint8,
                (10,),
                np.uint8,
            )
            for frame in range(10):
                expected = (
                    truth_map(episode, frame)
                    if (episode, frame) in labelled
                    else np.zeros((96, 128), np.uint8)
                )
                assert np.array_equal(maps[frame], expected)
                assert flags[frame] == (1 if (episode, frame) in labelled else 0)
            assert list(flags.attrs["codes"]) == ["none", "human", "propagated", "model"]
            assert maps.attrs["camera"] == HIGH
            for name in (
                "action",
                "observations/qpos",
                "observations/qvel",
                HIGH,
                f"observations/images/{CAMERAS[1]}",
            ):
                assert np.array_equal(before[name][()], after[name][()])
            assert dict(before.attrs) == dict(after.attrs)


def test_an_external_link_quarantines_its_episode(tmp_path):
    root = write_aloha(tmp_path / "aloha")
    with h5py.File(root / "episode_1.hdf5", "a") as handle:
        handle["observations/elsewhere"] = h5py.ExternalLink("/etc/secret.h5", "/data")
    code, out, err = run_cli("ingest", str(root), "--out", str(tmp_path / "s"), "--batch", "x")
    assert code == 0, err
    assert "episode 1: quarantined" in out and "external link to /etc/secret.h5" in out
    assert set(pd.read_csv(tmp_path / "s/frames/x/manifest.csv").episode_index) == {0}


def test_absurd_dimensions_are_refused_before_anything_is_stored(tmp_path):
    root = write_aloha(tmp_path / "aloha", episodes=1)
    with h5py.File(root / "episode_0.hdf5", "a") as handle:
        del handle[HIGH]
        handle.create_dataset(HIGH, shape=(10, 200_000, 200_000, 3), dtype="uint8", chunks=(1, 16, 16, 3))
    code, _, err = run_cli("ingest", str(root), "--out", str(tmp_path / "s"), "--batch", "big")
    assert code == 1
    assert "frame size 200000x200000 is outside" in err and HIGH in err and "Traceback" not in err
    assert not (tmp_path / "s/incoming/big").exists()


def test_a_file_that_already_holds_a_segmentation_is_refused(tmp_path):
    root = write_aloha(tmp_path / "aloha", episodes=1)
    shutil.copy(root / "episode_0.hdf5", tmp_path / "copy.hdf5")
    with h5py.File(root / "episode_0.hdf5", "a") as handle:
        handle.create_dataset("observations/images/segmentation", data=np.zeros((10, 96, 128), np.uint8))
    code, _, err = run_cli("ingest", str(root), "--out", str(tmp_path / "s"), "--batch", "seg")
    assert code == 1 and "already has a segmentation feature" in err


def test_a_tool_export_goes_back_in_through_import_review_and_the_ingest_manifest(tmp_path):
    """The scripted loop: ingest, label in CVAT (its export names the frames by their file in the
    batch), import-review with --images <frames manifest>, write-back."""
    from dataset_pipeline.formats.cvat.tasks import CvatImage, CvatShape, annotations_xml
    from dataset_pipeline.taxonomy import load_taxonomy

    root = write_aloha(tmp_path / "aloha")
    run_cli(
        "ingest", str(root), "--out", str(tmp_path / "s"), "--batch", "cv", "--every", "5", "--camera", HIGH
    )
    manifest = pd.read_csv(tmp_path / "s/frames/cv/manifest.csv")
    taxonomy = load_taxonomy()
    images = [
        CvatImage(frame=i, name=row.image_file, width=128, height=96,
                  shapes=[CvatShape(label=taxonomy.names[1], mask=truth_map(row.episode_index, row.frame_index) == 1)])
        for i, row in enumerate(manifest.itertuples())
    ]  # fmt: skip
    (tmp_path / "cvat.xml").write_bytes(annotations_xml(images, taxonomy, "cv"))
    code, _, err = run_cli("import-review", str(tmp_path / "cvat.xml"), "--images", str(tmp_path / "s/frames/cv/manifest.csv"),
                           "--annotator", "ann@test", "--review-status", "expert_approved", "--out", str(tmp_path / "a.parquet"))  # fmt: skip
    assert code == 0, err
    table = pd.read_parquet(tmp_path / "a.parquet")
    assert sorted(table.image_id) == sorted(
        frame_id("cv", HIGH, r.episode_index, r.frame_index) for r in manifest.itertuples()
    )
    code, out, err = run_cli("write-back", str(tmp_path / "s/incoming/cv"), "--annotations", str(tmp_path / "a.parquet"),
                             "--out", str(tmp_path / "aug"))  # fmt: skip
    assert code == 0, err
    with h5py.File(tmp_path / "aug/episode_1.hdf5") as handle:
        assert np.array_equal(
            handle["observations/images/segmentation"][5], (truth_map(1, 5) == 1).astype(np.uint8)
        )
        assert handle["observations/images/segmentation_source"][()].tolist() == [
            1,
            0,
            0,
            0,
            0,
            1,
            0,
            0,
            0,
            0,
        ]


def test_an_unknown_camera_is_refused_naming_the_dataset_s_cameras(tmp_path):
    root = write_aloha(tmp_path / "aloha", episodes=1)
    code, _, err = run_cli(
        "ingest", str(root), "--out", str(tmp_path / "s"), "--batch", "cam", "--camera", "top"
    )
    assert code == 1
    assert (
        "no camera 'top'; the dataset's cameras are observations/images/cam_high, observations/images/cam_left_wrist"
        in err
    )
    assert not (tmp_path / "s/incoming/cam").exists()

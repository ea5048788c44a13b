import io

import numpy as np
import pandas as pd

from dataset_pipeline.demo import plan_episodes, render_episode, write_demo_upload
from dataset_pipeline.demo.scenes import HEIGHT, LIGHTINGS, SCENES, WIDTH
from dataset_pipeline.masks import decode_mask
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.taxonomy import load_taxonomy


def test_default_plan_covers_scenes_lightings_and_episodes():
    episodes = plan_episodes(120, 8)
    assert sum(n for *_, n in episodes) == 120
    assert {SCENES[s][0] for s, *_ in episodes} == {name for name, _ in SCENES}
    assert len(SCENES) >= 4
    assert {lighting for _, lighting, *_ in episodes} == set(LIGHTINGS)
    assert len({(s, lighting) for s, lighting, *_ in episodes}) >= 6


def test_rendering_is_deterministic_by_seed():
    a = list(render_episode(1, "warm", 2, seed=5))
    b = list(render_episode(1, "warm", 2, seed=5))
    c = list(render_episode(1, "warm", 2, seed=6))
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0].image, c[0].image)


def test_frames_have_every_kind_of_object_and_consistent_visible_masks():
    frames = list(render_episode(0, "daylight", 6, seed=2))
    seen = set()
    for frame in frames:
        assert frame.image.shape == (HEIGHT, WIDTH, 3)
        assert frame.depth.dtype == np.uint16 and frame.depth.shape == (HEIGHT, WIDTH)
        union = np.zeros((HEIGHT, WIDTH), dtype=int)
        for inst in frame.instances:
            union += inst.mask
            seen.add(inst.class_name)
        assert union.max() == 1  # visible masks never overlap
    assert {
        "support_surface",
        "target_object",
        "container",
        "obstacle_rigid",
        "obstacle_deformable",
        "robot_arm",
        "gripper",
    } <= seen


def test_episodes_move_and_occlude():
    frames = list(render_episode(2, "dim", 8, seed=0))
    arm = [next(i.mask for i in f.instances if i.class_name == "robot_arm") for f in frames]
    assert not np.array_equal(arm[0], arm[-1])  # the arm reaches
    table = [next(i.mask for i in f.instances if i.class_name == "support_surface") for f in frames]
    assert table[0].sum() != table[-1].sum()  # ... and hides a changing part of the table
    lighting = {
        LIGHTINGS[k]: np.mean(next(render_episode(2, LIGHTINGS[k], 1, seed=0)).image) for k in range(3)
    }
    assert lighting["dim"] < 0.7 * lighting["daylight"]


def test_hand_appears_in_some_episodes():
    classes = set()
    for episode in range(6):
        for frame in render_episode(episode % len(SCENES), "daylight", 8, seed=0, episode_index=episode):
            classes |= {i.class_name for i in frame.instances}
    assert "human_hand" in classes


def test_thin_structures_are_thin():
    import cv2

    frames = list(render_episode(0, "daylight", 1, seed=0))
    cable = [i.mask for i in frames[0].instances if i.class_name == "obstacle_deformable"]
    widths = [2 * cv2.distanceTransform(m.astype(np.uint8), cv2.DIST_L2, 3).max() for m in cable]
    assert min(widths) <= 6  # the cable is a few pixels wide; the cloth is much wider
    assert max(widths) > 20


def test_upload_layout_manifest_and_ground_truth(tmp_path):
    store = DatasetStore(str(tmp_path))
    upload = write_demo_upload(store, "b1", n_images=10, seed=1, frames_per_episode=5)
    manifest = pd.read_csv(io.BytesIO(store.read_bytes("incoming/b1/manifest.csv")))
    assert list(manifest.columns) == [
        "image_file",
        "capture_ts",
        "camera_model",
        "scene_id",
        "lighting",
        "episode_id",
        "frame_index",
        "depth_file",
        "post_processing",
    ]
    assert len(manifest) == upload.n_images == 10
    assert manifest.groupby("episode_id").frame_index.apply(list).tolist() == [[0, 1, 2, 3, 4]] * 2
    assert pd.to_datetime(manifest.capture_ts).is_monotonic_increasing
    for key in manifest.image_file.tolist() + manifest.depth_file.tolist():
        assert store.exists(f"incoming/b1/{key}")
    truth = store.read_parquet(upload.ground_truth_key)
    assert not upload.ground_truth_key.startswith("incoming/")  # kept apart from the upload
    taxonomy = load_taxonomy()
    assert set(truth.class_id) <= set(taxonomy.ids[1:])
    assert len(truth) == upload.n_instances
    row = truth.iloc[0]
    assert decode_mask(row.rle, row.height, row.width).sum() == row.area
    prompts = pd.read_csv(io.BytesIO(store.read_bytes("incoming/b1/prompts.csv")))
    assert set(prompts.class_name) <= set(taxonomy.names[1:])
    assert "support_surface" not in set(prompts.class_name)
    # every prompt box lies near a ground-truth instance of its class (detector jitter only)
    first = prompts.iloc[0]
    candidates = truth[(truth.image_file == first.image_file) & (truth.class_name == first.class_name)]
    best = 0.0
    for cand in candidates.itertuples():
        ys, xs = np.nonzero(decode_mask(cand.rle, cand.height, cand.width))
        box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        inter = max(0, min(box[2], first.x1) - max(box[0], first.x0)) * max(
            0, min(box[3], first.y1) - max(box[1], first.y0)
        )
        union = (box[2] - box[0]) * (box[3] - box[1]) + (first.x1 - first.x0) * (first.y1 - first.y0) - inter
        best = max(best, inter / union)
    assert best > 0.7


def test_same_seed_gives_identical_upload_bytes(tmp_path):
    a, b = DatasetStore(str(tmp_path / "a")), DatasetStore(str(tmp_path / "b"))
    write_demo_upload(a, "x", n_images=3, seed=4)
    write_demo_upload(b, "x", n_images=3, seed=4)
    keys = a.list("incoming/x", recursive=True)
    assert keys == b.list("incoming/x", recursive=True)
    assert all(a.read_bytes(k) == b.read_bytes(k) for k in keys)

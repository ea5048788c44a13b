"""Episode propagation: keyframes, the flow and sam2 backends, temporal consistency, the CLI, bad input.

The reference of the flow backend is the simple peer the issue names, written here with OpenCV
directly: each frame's labels warped from its nearest keyframe by DIS flow (nearest-neighbour).
Ground truth is the demo renderer's exact masks.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dataset_pipeline.cli import main
from dataset_pipeline.demo.scenes import render_episode
from dataset_pipeline.episode_propagation import KeyframeSettings, PropagationError
from dataset_pipeline.episode_propagation.checks import consistency_verdict, flicker_verdict
from dataset_pipeline.episode_propagation.consistency import episode_consistency
from dataset_pipeline.episode_propagation.core import check_episode
from dataset_pipeline.episode_propagation.flow import FlowPropagator
from dataset_pipeline.episode_propagation.keyframes import choose_keyframes, frame_motion
from dataset_pipeline.formats.importing import ImageIndex, ImportOptions
from dataset_pipeline.formats.label_studio.codec import mask_to_brush_rle
from dataset_pipeline.formats.label_studio.tasks import premask_result_id
from dataset_pipeline.formats.reading import import_any
from dataset_pipeline.masks import encode_mask
from dataset_pipeline.taxonomy import load_taxonomy

TAXONOMY = load_taxonomy()
IDS = {c.name: c.id for c in TAXONOMY.classes}


@pytest.fixture(scope="module")
def episode() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A rendered 16-frame episode (arm reaching, hand passing) and its exact class maps."""
    frames = list(render_episode(3, "daylight", 16, seed=5, episode_index=1))
    maps = []
    for frame in frames:
        labels = np.zeros(frame.image.shape[:2], np.uint8)
        for instance in frame.instances:
            labels[instance.mask] = IDS[instance.class_name]
        maps.append(labels)
    return [f.image for f in frames], maps


def _miou(a: np.ndarray, b: np.ndarray) -> float:
    ious = [
        ((a == c) & (b == c)).sum() / ((a == c) | (b == c)).sum()
        for c in set(np.unique(a)) | set(np.unique(b))
        if c
    ]
    return float(np.mean(ious))


def _nearest_keyframe_warp(frames, maps, keys) -> dict[int, np.ndarray]:
    out = {}
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    for index in range(len(frames)):
        if index in keys:
            continue
        k = min(keys, key=lambda k: (abs(k - index), k))
        here, there = (cv2.cvtColor(frames[i], cv2.COLOR_RGB2GRAY) for i in (index, k))
        flow = dis.calc(here, there, None)
        ys, xs = np.mgrid[0 : here.shape[0], 0 : here.shape[1]].astype(np.float32)
        out[index] = cv2.remap(maps[k], xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_NEAREST)
    return out


def test_flow_propagation_every_5th_frame_beats_warping_from_the_nearest_keyframe(episode):
    frames, maps = episode
    keys = {k: maps[k] for k in (0, 5, 10, 15)}
    out = FlowPropagator().propagate(frames, keys)
    peer = _nearest_keyframe_warp(frames, maps, keys)
    ours = np.mean([_miou(f.labels, maps[f.index]) for f in out if not f.is_keyframe])
    theirs = np.mean([_miou(labels, maps[i]) for i, labels in peer.items()])
    assert ours >= theirs
    assert ours > 0.85
    assert all(np.array_equal(out[k].labels, keys[k]) and out[k].is_keyframe for k in keys)
    middle = out[2]
    assert middle.sources == (0, 5) and middle.distance == 2 and 0 < middle.confidence <= 1
    assert set(middle.id_confidence) <= set(np.unique(middle.labels)) - {0}


def test_fast_motion_gets_more_keyframes():
    canvas = np.zeros((96, 128), np.uint8)

    def moving(step: int) -> list[np.ndarray]:
        out = []
        for t in range(16):
            frame = canvas.copy()
            cv2.rectangle(frame, (10 + step * t % 90, 30), (30 + step * t % 90, 60), 255, -1)
            out.append(cv2.GaussianBlur(frame, (5, 5), 1))
        return out

    def chosen(frames: list[np.ndarray]) -> list[tuple[int, str]]:
        motion = [0.0] + [frame_motion(a, b) for a, b in zip(frames, frames[1:], strict=False)]
        return choose_keyframes(motion, KeyframeSettings(every=5, max_motion_px=12, min_frames=12))

    slow, fast = chosen(moving(1)), chosen(moving(5))
    assert [r for _, r in slow].count("motion") == 0
    assert [r for _, r in fast].count("motion") >= 3
    assert len(fast) > len(slow) and fast[0] == (0, "first") and fast[-1] == (15, "last")
    assert choose_keyframes([0.0] * 5, KeyframeSettings()) == [(i, "short") for i in range(5)]


def test_temporal_consistency_passes_the_truth_and_fails_a_drifting_propagation(episode):
    frames, maps = episode
    truth = episode_consistency(frames[:8], maps[:8])
    drifted = [
        np.roll(m, 12 * (i % 2), axis=1) for i, m in enumerate(maps[:8])
    ]  # masks jump 12 px back and forth
    bad = episode_consistency(frames[:8], drifted)
    arm = IDS["robot_arm"]
    assert truth.per_class()[arm][1] > 0.85 > bad.per_class()[arm][1]

    def table(result):
        return pd.DataFrame(
            [
                {
                    "episode_id": "e",
                    "class_name": TAXONOMY.by_id(c).name,
                    "category": TAXONOMY.by_id(c).category,
                    "mean_warped_iou": mean,
                    "min_warped_iou": low,
                    "threshold": 0.7,
                    "passed": mean >= 0.7,
                    "worst_image_id": f"b/{at}",
                    "flickers": 0,
                }
                for c, (_, mean, low, at) in result.per_class().items()
                if TAXONOMY.by_id(c).category == "rigid"
            ]
        )

    assert consistency_verdict(table(truth), {"rigid": 0.7}).passed
    verdict = consistency_verdict(table(bad), {"rigid": 0.7})
    assert (
        not verdict.passed and "under their floor" in verdict.summary and verdict.tables["under floor"].size
    )
    blinking = [m.copy() for m in maps[:6]]
    blinking[3][blinking[3] == IDS["container"]] = 0
    flickers = episode_consistency(frames[:6], blinking).flickers
    assert [(f.class_id, f.start, f.length, f.kind) for f in flickers] == [
        (IDS["container"], 3, 1, "vanishes")
    ]
    assert not flicker_verdict(
        pd.DataFrame({"episode_id": ["e"], "class_name": ["container"], "flickers": [1]})
    ).passed


def test_sam2_video_predictor_from_its_config_propagates_keyframe_ids(episode):
    from dataset_pipeline.episode_propagation.sam2_video import Sam2VideoPropagator

    frames, maps = episode
    small = [cv2.resize(f, (160, 120)) for f in frames[:4]]
    keys = {k: cv2.resize(maps[k], (160, 120), interpolation=cv2.INTER_NEAREST) for k in (0, 3)}
    propagator = Sam2VideoPropagator(checkpoint=None, device="cpu", image_size=256)  # random weights
    out = propagator.propagate(small, keys, "ep")
    assert propagator.model_version == "sam2.1_hiera_t@random-weights"
    assert [f.sources for f in out] == [(0,), (0, 3), (0, 3), (3,)]
    assert [f.distance for f in out] == [0, 1, 1, 0]
    allowed = set(np.unique(keys[0])) | set(np.unique(keys[3]))
    for frame in out[1:3]:
        assert frame.labels.shape == (120, 160) and frame.labels.dtype == keys[0].dtype
        assert set(np.unique(frame.labels)) <= allowed and 0 <= frame.confidence <= 1


def test_bad_episodes_are_refused_naming_the_episode_and_frame():
    frames = [np.zeros((48, 64, 3), np.uint8)] * 4
    good = np.zeros((48, 64), np.uint8)
    with pytest.raises(
        PropagationError, match=r"episode ep7, frame 2: keyframe mask is 32x24, the frame 64x48"
    ):
        check_episode(frames, {0: good, 2: np.zeros((24, 32), np.uint8)}, "ep7")
    with pytest.raises(
        PropagationError, match=r"episode ep7, keyframe 9: is not a frame of the episode \(frames 0..3\)"
    ):
        check_episode(frames, {9: good}, "ep7")
    with pytest.raises(
        PropagationError, match=r"episode ep7, 1 frame\(s\): an episode needs 2 or more frames"
    ):
        check_episode(frames[:1], {0: good}, "ep7")
    with pytest.raises(PropagationError, match="integer label map"):
        check_episode(frames, {0: good.astype(float)}, "ep7")
    with pytest.raises(
        PropagationError, match=r"episode ep7, frame 0: is 8x6; optical flow needs frames of 16 px"
    ):
        check_episode([np.zeros((6, 8, 3), np.uint8)] * 2, {0: np.zeros((6, 8), np.uint8)}, "ep7")


def _episode_folder(tmp_path: Path, episode, mode: str) -> tuple[Path, Path, dict[int, np.ndarray]]:
    frames, maps = episode
    frames_dir, masks_dir = tmp_path / "cam0_ep3", tmp_path / "keys"
    frames_dir.mkdir()
    masks_dir.mkdir()
    for index, rgb in enumerate(frames[:8]):
        Image.fromarray(rgb).save(frames_dir / f"{index:05d}.jpg", quality=92)
    palette = [v for c in TAXONOMY.classes for v in c.rgb]
    written = {}
    for index in (0, 4, 7):
        labels = maps[index]
        if mode == "P":
            image = Image.frombytes("P", labels.shape[::-1], labels.tobytes())
            image.putpalette(palette)
        elif mode == "L":  # a binary 0/255 mask of the arm
            labels = np.where(labels == IDS["robot_arm"], 255, 0).astype(np.uint8)
            image = Image.fromarray(labels)
        else:
            image = Image.fromarray(np.asarray(palette, np.uint8).reshape(-1, 3)[labels])
        image.save(masks_dir / f"{index:05d}.png")
        written[index] = np.asarray(image)
    return frames_dir, masks_dir, written


@pytest.mark.parametrize("mode", ["P", "L", "RGB"])
def test_propagate_command_keeps_the_masks_encoding(tmp_path, episode, mode, capsys):
    frames_dir, masks_dir, written = _episode_folder(tmp_path, episode, mode)
    out = tmp_path / "out"
    assert main(["propagate", str(frames_dir), str(masks_dir), "--out", str(out), "--backend", "flow"]) == 0
    printed = capsys.readouterr().out
    assert "00002.jpg: propagated from 00000.jpg, 00004.jpg (distance 2" in printed
    assert "temporal consistency" in printed and "8 frames written" in printed
    files = sorted(out.iterdir())
    assert [f.name for f in files] == [f"{i:05d}.png" for i in range(8)]
    for index, expected in written.items():
        assert np.array_equal(np.asarray(Image.open(out / f"{index:05d}.png")), expected)
    middle = Image.open(out / "00002.png")
    assert middle.mode == Image.open(masks_dir / "00000.png").mode
    values = (
        {tuple(v) for v in np.asarray(middle).reshape(-1, 3)} if mode == "RGB" else set(np.unique(middle))
    )
    known = (
        {tuple(v) for w in written.values() for v in w.reshape(-1, 3)}
        if mode == "RGB"
        else set(np.unique(list(written.values())))
    )
    assert values <= known and len(values) > 1
    if mode == "P":
        assert middle.getpalette()[:24] == Image.open(masks_dir / "00000.png").getpalette()[:24]


def test_propagate_command_refuses_bad_input_and_writes_nothing(tmp_path, episode, capsys):
    frames_dir, masks_dir, _ = _episode_folder(tmp_path, episode, "P")
    out = tmp_path / "out"
    Image.open(masks_dir / "00004.png").save(masks_dir / "00042.png")
    assert main(["propagate", str(frames_dir), str(masks_dir), "--out", str(out)]) == 1
    assert (
        "episode cam0_ep3, mask 00042.png: names no frame of the episode (8 frames" in capsys.readouterr().err
    )
    (masks_dir / "00042.png").unlink()
    Image.open(masks_dir / "00004.png").resize((32, 24)).save(masks_dir / "00004.png")
    assert main(["propagate", str(frames_dir), str(masks_dir), "--out", str(out)]) == 1
    assert "episode cam0_ep3, frame 4: keyframe mask is 32x24, the frame 640x480" in capsys.readouterr().err
    Image.open(masks_dir / "00000.png").convert("L").save(masks_dir / "00004.png")
    assert main(["propagate", str(frames_dir), str(masks_dir), "--out", str(out)]) == 1
    assert "episode cam0_ep3, keyframe masks: mixed PNG modes ['L', 'P']" in capsys.readouterr().err
    Image.open(masks_dir / "00000.png").save(masks_dir / "00004.png")
    data = (frames_dir / "00006.jpg").read_bytes()
    (frames_dir / "00006.jpg").write_bytes(data[: len(data) // 3])  # the recording stopped mid-file
    assert main(["propagate", str(frames_dir), str(masks_dir), "--out", str(out)]) == 1
    assert (
        "episode cam0_ep3, frame 6 (00006.jpg): 00006.jpg: corrupt or truncated image"
        in capsys.readouterr().err
    )
    assert not out.exists()


def test_corrections_of_propagated_predictions_import_as_propagated_or_corrected():
    h, w = 40, 50
    arm = np.zeros((h, w), bool)
    arm[5:20, 5:30] = True
    cup = np.zeros((h, w), bool)
    cup[25:35, 30:45] = True
    propagated = pd.DataFrame(
        {
            "premask_id": ["prop-a", "prop-b"],
            "image_id": ["b/f1", "b/f1"],
            "class_id": [IDS["robot_arm"], IDS["container"]],
            "height": h,
            "width": w,
            "rle": [encode_mask(arm), encode_mask(cup)],
        }
    )
    fixed_cup = cup.copy()
    fixed_cup[25:35, 30:40] = False
    results = [
        {
            "id": premask_result_id(pid),
            "type": "brushlabels",
            "from_name": "brush",
            "to_name": "image",
            "original_width": w,
            "original_height": h,
            "origin": origin,
            "value": {"format": "rle", "rle": mask_to_brush_rle(mask), "brushlabels": [label]},
        }
        for pid, mask, label, origin in [
            ("prop-a", arm, "robot_arm", "prediction"),
            ("prop-b", fixed_cup, "container", "prediction-changed"),
        ]
    ]
    export = [
        {
            "id": 1,
            "data": {"image": "/data/local-files/?d=incoming/b/f1.png", "image_id": "b/f1"},
            "annotations": [
                {
                    "id": 9,
                    "completed_by": {"id": 1, "email": "a@x"},
                    "result": results,
                    "created_at": "2026-11-26T09:00:00Z",
                    "lead_time": 20.0,
                }
            ],
        }
    ]
    captures = pd.DataFrame({"image_id": ["b/f1"], "uri": ["incoming/b/f1.png"], "width": [w], "height": [h]})
    options = ImportOptions(TAXONOMY, images=ImageIndex.from_captures(captures), propagated=propagated)
    table = import_any(json.dumps(export).encode(), options).annotations.sort_values("premask_id")
    assert list(table.assistance) == ["propagated", "propagated-corrected"]
    assert list(table.premask_id) == ["prop-a", "prop-b"]
    assert table.premask_iou.iloc[0] == 1.0 and table.premask_iou.iloc[1] < 0.5

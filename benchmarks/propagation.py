"""Episode propagation: mask IoU against the demo's ground truth at keyframe spacings, frames/s of
each backend, and the labour the card's cost model says propagation saves at N=5.

Episodes are the demo renderer's (the arm reaches, the gripper closes, a hand passes; sub-pixel
camera shake and sensor noise); ground truth is their exact class maps. The named peer, run in
the same process on the same frames: each frame's labels warped from its nearest keyframe with
DIS flow (medium preset, nearest-neighbour), the simplest flow propagation.

Labour, in the card's cost model on the demo annotators' times: a hand-labelled frame costs
their mean seconds per mask times its masks; a propagated mask costs a check (10% of that) when
it is right (IoU >= 0.85 to the truth, what the demo's annotators accept) and a redraw otherwise.

    .venv/bin/python benchmarks/propagation.py --episodes 4 --frames 30 [--sam2-config ...] [--device cuda]

SAM 2 runs with random weights (speed does not depend on them; its IoU would mean nothing).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from dataset_pipeline.demo.review import ANNOTATORS
from dataset_pipeline.demo.scenes import LIGHTINGS, render_episode
from dataset_pipeline.episode_propagation.flow import FlowPropagator, dis_flow, gray
from dataset_pipeline.taxonomy import load_taxonomy


def episodes(count: int, frames: int, size: int | None = None):
    ids = {c.name: c.id for c in load_taxonomy().classes}
    for number in range(count):
        rendered = list(render_episode(number, LIGHTINGS[number % 3], frames, seed=11, episode_index=number))
        rgb, maps = [], []
        for frame in rendered:
            labels = np.zeros(frame.image.shape[:2], np.uint8)
            for inst in frame.instances:
                labels[inst.mask] = ids[inst.class_name]
            if size:
                rgb.append(cv2.resize(frame.image, (size, size * 3 // 4)))
                maps.append(cv2.resize(labels, (size, size * 3 // 4), interpolation=cv2.INTER_NEAREST))
            else:
                rgb.append(frame.image)
                maps.append(labels)
        yield rgb, maps, rendered


def miou(a: np.ndarray, b: np.ndarray) -> float:
    classes = [c for c in set(np.unique(a)) | set(np.unique(b)) if c]
    return float(np.mean([((a == c) & (b == c)).sum() / ((a == c) | (b == c)).sum() for c in classes]))


def keyframes_every(n_frames: int, spacing: int) -> list[int]:
    return sorted(set(range(0, n_frames, spacing)) | {n_frames - 1})


def nearest_warp(rgb, maps, keys) -> dict[int, np.ndarray]:
    out = {}
    for index in range(len(rgb)):
        if index in keys:
            continue
        k = min(keys, key=lambda k: (abs(k - index), k))
        flow = dis_flow(gray(rgb[index]), gray(rgb[k]))
        ys, xs = np.mgrid[0 : flow.shape[0], 0 : flow.shape[1]].astype(np.float32)
        out[index] = cv2.remap(maps[k], xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_NEAREST)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--spacings", type=int, nargs="+", default=[2, 5, 10])
    parser.add_argument(
        "--sam2-config", default=None, help="also time sam2's video predictor (random weights)"
    )
    parser.add_argument("--sam2-frames", type=int, default=6, help="frames of the sam2 timing segment")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args()

    data = list(episodes(args.episodes, args.frames))
    rows = []
    flow = FlowPropagator()
    per_mask = statistics.mean(a.seconds_per_mask for a in ANNOTATORS if a.tool == "label_studio")
    for spacing in args.spacings:
        ours, peer, seconds, peer_seconds, frames_done = [], [], 0.0, 0.0, 0
        hand_cost = checked_cost = 0.0
        for rgb, maps, _ in data:
            keys = {k: maps[k] for k in keyframes_every(len(rgb), spacing)}
            started = time.perf_counter()
            out = flow.propagate(rgb, keys)
            seconds += time.perf_counter() - started
            started = time.perf_counter()
            warped = nearest_warp(rgb, maps, keys)
            peer_seconds += time.perf_counter() - started
            frames_done += len(warped)
            for frame in out:
                truth = maps[frame.index]
                masks = len([c for c in np.unique(truth) if c])
                hand_cost += masks * per_mask
                if frame.is_keyframe:
                    checked_cost += masks * per_mask
                    continue
                ours.append(miou(frame.labels, truth))
                peer.append(miou(warped[frame.index], truth))
                for c in (c for c in np.unique(truth) if c):
                    a, b = frame.labels == c, truth == c
                    right = (a & b).sum() / max(1, (a | b).sum()) >= 0.85
                    checked_cost += per_mask * (0.1 if right else 1.0)
        rows.append(
            {
                "spacing": spacing,
                "flow_miou": round(float(np.mean(ours)), 4),
                "nearest_warp_miou": round(float(np.mean(peer)), 4),
                "ratio": round(float(np.mean(ours)) / float(np.mean(peer)), 4),
                "flow_frames_per_s": round(frames_done / seconds, 2),
                "nearest_warp_frames_per_s": round(frames_done / peer_seconds, 2),
                "labour_saved_share": round(1 - checked_cost / hand_cost, 4),
                "hand_hours": round(hand_cost / 3600, 3),
                "with_propagation_hours": round(checked_cost / 3600, 3),
            }
        )
        print(json.dumps(rows[-1]))
    result: dict = {
        "machine": f"{platform.processor() or platform.machine()} {platform.node()}",
        "rows": rows,
        "episodes": args.episodes,
        "frames": args.frames,
    }
    if args.sam2_config:
        from dataset_pipeline.episode_propagation.sam2_video import Sam2VideoPropagator

        propagator = Sam2VideoPropagator(args.sam2_config, None, args.device)
        rgb, maps, _ = next(episodes(1, args.sam2_frames, size=1024))
        keys = {0: maps[0], len(rgb) - 1: maps[-1]}
        propagator.propagate(rgb[:3], {0: maps[0], 2: maps[2]})  # warm-up
        times = []
        for _ in range(3):
            started = time.perf_counter()
            propagator.propagate(rgb, keys)
            times.append(time.perf_counter() - started)
        objects = len([c for c in np.unique(maps[0]) if c])
        fps = (len(rgb) - 2) / statistics.median(times)
        result["sam2"] = {
            "config": args.sam2_config,
            "device": args.device,
            "objects": objects,
            "frames_per_s": round(fps, 3),
            "object_frames_per_s": round(fps * objects, 3),
        }
        print(json.dumps(result["sam2"]))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

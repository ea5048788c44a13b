"""The demo robot's upload: rendered episodes written as a robot logging job writes them.

``incoming/<batch>/`` holds JPEG frames, 16-bit depth PNGs (millimetres), ``manifest.csv``
with provenance and ``prompts.csv`` (per-object boxes and points as a robot's object
detector would give them, jittered). Kept apart from the upload, the ground truth
(``layout.ground_truth_key``) holds the exact visible instance masks (RLE), for the
simulated annotators and tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from dataset_pipeline import layout, schemas
from dataset_pipeline.demo.scenes import HEIGHT, LIGHTINGS, SCENES, WIDTH, Instance, render_episode
from dataset_pipeline.masks import encode_mask, mask_bbox
from dataset_pipeline.raw_captures import image_id_for
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.taxonomy import Taxonomy, load_taxonomy


@dataclass(frozen=True)
class DemoUpload:
    """What :func:`write_demo_upload` wrote."""

    batch: str
    n_images: int
    n_instances: int
    manifest_key: str
    ground_truth_key: str


def plan_episodes(n_images: int, frames_per_episode: int = 8) -> list[tuple[int, str, int, int]]:
    """(scene_index, lighting, episode_index, n_frames) per episode, covering every scene and lighting.

    >>> [e[:2] for e in plan_episodes(24, 8)]
    [(0, 'daylight'), (1, 'dim'), (2, 'warm')]
    """
    if n_images < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}")
    episodes = []
    remaining, index = n_images, 0
    while remaining > 0:
        n = min(frames_per_episode, remaining)
        episodes.append((index % len(SCENES), LIGHTINGS[index % len(LIGHTINGS)], index, n))
        remaining -= n
        index += 1
    return episodes


def write_demo_upload(
    store: DatasetStore,
    batch: str,
    n_images: int = 120,
    seed: int = 0,
    *,
    taxonomy: Taxonomy | None = None,
    with_depth: bool = True,
    frames_per_episode: int = 8,
    start: datetime | None = None,
) -> DemoUpload:
    """Render a demo batch and write it as a robot's upload to ``incoming/<batch>/``.

    The manifest is written last, because a batch counts as complete (and the upload
    sensor fires) once its manifest exists.
    """
    import cv2

    taxonomy = taxonomy or load_taxonomy()
    class_ids = {c.name: c.id for c in taxonomy.classes}
    start = start or datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    rng = np.random.default_rng([seed, 9999])
    manifest_rows, prompt_rows, truth_rows = [], [], []
    clock = start
    for scene_index, lighting, episode_index, n_frames in plan_episodes(n_images, frames_per_episode):
        for frame in render_episode(scene_index, lighting, n_frames, seed, episode_index):
            stem = f"{frame.episode_id}_f{frame.frame_index:03d}"
            image_file = f"images/{stem}.jpg"
            ok, jpeg = cv2.imencode(".jpg", frame.image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
            assert ok
            store.put_upload(layout.upload_file(batch, image_file), jpeg.tobytes())
            depth_file = None
            if with_depth:
                depth_file = f"depth/{stem}.png"
                ok, png = cv2.imencode(".png", frame.depth)
                assert ok
                store.put_upload(layout.upload_file(batch, depth_file), png.tobytes())
            clock += timedelta(milliseconds=200)
            manifest_rows.append(
                {
                    "image_file": image_file,
                    "capture_ts": clock.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    "camera_model": frame.camera_model,
                    "scene_id": frame.scene_id,
                    "lighting": frame.lighting,
                    # a robot's logs name each episode once; the renderer's names repeat per batch
                    "episode_id": f"{batch}-{frame.episode_id}",
                    "frame_index": frame.frame_index,
                    "depth_file": depth_file,
                    "post_processing": None,
                }
            )
            truth_rows.extend(
                truth_rows_of(image_id_for(batch, image_file), image_file, frame.instances, class_ids)
            )
            for inst in frame.instances:
                box = mask_bbox(inst.mask)
                assert box is not None
                if inst.class_name == "support_surface" or inst.mask.sum() < 60:
                    continue  # a detector reports objects, not the table
                prompt_rows.append(_detector_prompt(rng, image_file, inst, box))
        clock += timedelta(minutes=3)

    store.put_upload(layout.prompts_key(batch), pd.DataFrame(prompt_rows).to_csv(index=False).encode())
    truth_key = layout.ground_truth_key(batch)
    store.write_parquet(truth_key, schemas.GROUND_TRUTH.frame(truth_rows))
    manifest_key = layout.manifest_key(batch)
    store.put_upload(manifest_key, pd.DataFrame(manifest_rows).to_csv(index=False).encode())
    return DemoUpload(batch, len(manifest_rows), len(truth_rows), manifest_key, truth_key)


def truth_rows_of(
    image_id: str, image_file: str, instances: list[Instance], class_ids: dict[str, int]
) -> list[dict[str, object]]:
    """A rendered frame's exact instances as ground-truth rows."""
    return [
        {
            "image_id": image_id,
            "image_file": image_file,
            "instance_id": f"{image_id}#{number}",
            "class_id": class_ids[inst.class_name],
            "class_name": inst.class_name,
            "z_order": inst.z_order,
            "height": HEIGHT,
            "width": WIDTH,
            "rle": encode_mask(inst.mask),
            "area": int(inst.mask.sum()),
        }
        for number, inst in enumerate(instances)
    ]


def _detector_prompt(
    rng: np.random.Generator, image_file: str, inst: Instance, box: tuple[int, int, int, int]
) -> dict[str, object]:
    """A box jittered by up to ~6% of its size and a point inside the mask, like a detector's output."""
    import cv2

    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    jitter = rng.normal(0, 0.03, 4) * [w, h, w, h]
    jx0, jy0, jx1, jy1 = np.array([x0, y0, x1, y1], dtype=float) + jitter
    inside = cv2.distanceTransform(inst.mask.astype(np.uint8), cv2.DIST_L2, 3)
    py, px = np.unravel_index(int(np.argmax(inside)), inside.shape)
    return {
        "image_file": image_file,
        "class_name": inst.class_name,
        "x0": round(float(np.clip(jx0, 0, WIDTH)), 1),
        "y0": round(float(np.clip(jy0, 0, HEIGHT)), 1),
        "x1": round(float(np.clip(jx1, 0, WIDTH)), 1),
        "y1": round(float(np.clip(jy1, 0, HEIGHT)), 1),
        "point_x": int(px),
        "point_y": int(py),
        "score": round(float(np.clip(rng.normal(0.9, 0.05), 0.5, 1.0)), 3),
    }


def ground_truth_annotations(truth: pd.DataFrame, annotator_id: str = "demo_truth") -> pd.DataFrame:
    """The demo's exact instances as an annotations table (one annotator, expert-approved).

    For tests and benchmarks of the stages after review (splits, release) without simulating
    review; ``assistance`` is ``auto`` because no person drew them.
    """
    return schemas.ANNOTATIONS.from_columns(
        {
            "annotation_id": truth.instance_id.astype(str),
            "image_id": truth.image_id,
            "annotator_id": annotator_id,
            "class_id": truth.class_id,
            "height": truth.height,
            "width": truth.width,
            "rle": truth.rle,
            "z_order": truth.z_order,
            "created_at": pd.Timestamp("2026-11-20T12:00:00Z"),
            "seconds_spent": 0.0,
            "tool": "demo",
            "tool_version": "ground-truth",
            "assistance": "auto",
            "premask_id": None,
            "premask_iou": np.nan,
            "review_status": "expert_approved",
            "review_accepted": True,
            "audit_accepted": pd.NA,
            "is_gold": False,
            "source_file": "ground_truth",
            "guideline_revision": pd.NA,
        }
    )

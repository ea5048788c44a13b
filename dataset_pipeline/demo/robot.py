"""The demo robot's LeRobot upload: rendered episodes logged with lerobot's own recorder.

A robot that logs with lerobot writes a v3.0 dataset (AV1 video per camera, joint states and
actions per frame, a task per episode); the demo does the same through lerobot 0.4.4 in its
own environment (``robot_workers/lerobot_worker.py create``; the joint states and actions are
synthetic), copies it into ``incoming/<batch>/`` and writes ``UPLOAD_COMPLETE`` last, as an
upload job would. The ground truth of every frame is kept apart, keyed by the image id the
ingest gives it, for the simulated annotators.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataset_pipeline import layout, schemas
from dataset_pipeline.demo.scenes import HEIGHT, WIDTH, render_episode
from dataset_pipeline.demo.upload import plan_episodes, truth_rows_of
from dataset_pipeline.raw_captures import image_id_for
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.taxonomy import Taxonomy, load_taxonomy

CAMERA = "observation.images.front"
FPS = 10


@dataclass(frozen=True)
class DemoRobotUpload:
    batch: str
    episodes: int
    frames: int
    n_instances: int


def write_lerobot_dataset(
    root: Path,
    frames_per_episode: list[list[np.ndarray]],
    tasks: list[str],
    *,
    repo_id: str = "demo/robot",
    fps: int = FPS,
    use_videos: bool = True,
    vcodec: str = "libsvtav1",
) -> dict:
    """Write a LeRobot v3.0 dataset with lerobot's ``LeRobotDataset.create`` / ``add_frame`` /
    ``save_episode`` (synthetic joint states and actions)."""
    from dataset_pipeline.formats.environments import run_worker

    height, width = frames_per_episode[0][0].shape[:2]
    with tempfile.TemporaryDirectory(prefix="dp-demo-frames-") as folder:
        episodes = []
        for number, (frames, task) in enumerate(zip(frames_per_episode, tasks, strict=True)):
            names = []
            for index, rgb in enumerate(frames):
                name = f"{number}_{index}.npy"
                np.save(Path(folder) / name, rgb)
                names.append(name)
            episodes.append({"task": task, "frames": names})
        return run_worker(
            "lerobot",
            "create",
            {
                "root": str(root),
                "repo_id": repo_id,
                "fps": fps,
                "shape": [height, width],
                "frames_dir": folder,
                "episodes": episodes,
                "camera": CAMERA,
                "use_videos": use_videos,
                "vcodec": vcodec,
            },
        )


def write_demo_robot_upload(
    store: DatasetStore,
    batch: str,
    episodes: int = 2,
    frames_per_episode: int = 24,
    seed: int = 0,
    *,
    taxonomy: Taxonomy | None = None,
) -> DemoRobotUpload:
    from dataset_pipeline.robot_datasets import IngestSettings, copy_into_upload

    taxonomy = taxonomy or load_taxonomy()
    class_ids = {c.name: c.id for c in taxonomy.classes}
    rendered: list[list[np.ndarray]] = []
    tasks: list[str] = []
    truth: list[dict[str, object]] = []
    plan = plan_episodes(episodes * frames_per_episode, frames_per_episode)
    for number, (scene_index, lighting, episode_index, n_frames) in enumerate(plan):
        frames = list(render_episode(scene_index, lighting, n_frames, seed + 7, episode_index))
        rendered.append([f.image for f in frames])
        tasks.append(f"tidy the {frames[0].scene_id.replace('_', ' ')} table")
        for frame in frames:
            image_file = layout.frame_image_file(CAMERA, number, frame.frame_index)
            truth += truth_rows_of(image_id_for(batch, image_file), image_file, frame.instances, class_ids)
    assert rendered[0][0].shape[:2] == (HEIGHT, WIDTH)
    with tempfile.TemporaryDirectory(prefix="dp-demo-robot-") as folder:
        root = Path(folder) / "dataset"
        write_lerobot_dataset(root, rendered, tasks)
        store.write_parquet(layout.ground_truth_key(batch), schemas.GROUND_TRUTH.frame(truth))
        copy_into_upload(root, store, batch, IngestSettings(every=1))
    return DemoRobotUpload(batch, len(rendered), sum(len(r) for r in rendered), len(truth))

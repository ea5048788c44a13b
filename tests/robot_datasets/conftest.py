"""Robot datasets as their own libraries write them, and the truth to compare the pipeline with.

LeRobot datasets are written by lerobot 0.4.4 (``LeRobotDataset.create`` / ``add_frame`` /
``save_episode``, in ``.lerobot-venv``), RLDS by tensorflow-datasets' builder (``make_rlds.py``
in ``.tfds-venv``), ALOHA episodes by h5py as ALOHA's recorder lays them out (``aloha.py``).
Frames are drawn so that each has a known class map: a moving box (class 1) over a gradient,
and a bar (class 4) in every other frame.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dataset_pipeline import layout, schemas
from dataset_pipeline.masks import encode_mask
from tests.conftest import require_environment

HERE = Path(__file__).resolve().parent
EPISODES, FRAMES, HEIGHT, WIDTH = 3, 10, 96, 128
CAMERA = "observation.images.front"


def truth_map(episode: int, frame: int) -> np.ndarray:
    """The class map of a drawn frame."""
    classes = np.zeros((HEIGHT, WIDTH), np.uint8)
    x = 8 + 7 * frame + 5 * episode
    classes[20:60, x : x + 30] = 1
    if frame % 2 == 0:
        classes[70:84, 10:110] = 4
    return classes


def drawn_frame(episode: int, frame: int) -> np.ndarray:
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    rgb = np.stack([xx * 2 % 256, yy * 2 % 256, np.full_like(xx, 40 * episode)], axis=-1).astype(np.uint8)
    classes = truth_map(episode, frame)
    rgb[classes == 1] = (230, 40, 40)
    rgb[classes == 4] = (30, 200, 60)
    return rgb


def write_lerobot(root: Path, *, use_videos: bool = True, vcodec: str = "libsvtav1") -> Path:
    from dataset_pipeline.demo.robot import write_lerobot_dataset

    frames = [[drawn_frame(e, f) for f in range(FRAMES)] for e in range(EPISODES)]
    write_lerobot_dataset(
        root, frames, [f"pick the box {e % 2}" for e in range(EPISODES)], repo_id="test/robot",
        use_videos=use_videos, vcodec=vcodec,
    )  # fmt: skip
    return root


@pytest.fixture(scope="session")
def lerobot_av1(tmp_path_factory) -> Path:
    require_environment("lerobot")
    return write_lerobot(tmp_path_factory.mktemp("lerobot") / "av1")


@pytest.fixture(scope="session")
def lerobot_images(tmp_path_factory) -> Path:
    require_environment("lerobot")
    return write_lerobot(tmp_path_factory.mktemp("lerobot") / "images", use_videos=False)


@pytest.fixture(scope="session")
def rlds_root(tmp_path_factory) -> Path:
    require_environment("tfds")
    from dataset_pipeline.formats.environments import python_of

    root = tmp_path_factory.mktemp("rlds")
    subprocess.run(
        [python_of("tfds"), str(HERE / "make_rlds.py"), str(root), "3", "6", str(HEIGHT), str(WIDTH)],
        check=True, capture_output=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    return root


def read_back(environment: str, *args: str, tmp_path: Path) -> dict[str, np.ndarray]:
    """``read_back.py`` in the library's environment: what the library itself reads."""
    from dataset_pipeline.formats.environments import python_of

    out = tmp_path / f"read-{environment}-{len(list(tmp_path.glob('read-*')))}.npz"
    subprocess.run(
        [python_of(environment), str(HERE / "read_back.py"), environment, *args, str(out)],
        check=True, capture_output=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    with np.load(out) as data:
        return {k: data[k] for k in data.files}


def annotations_for(
    image_ids: list[str], maps: list[np.ndarray], annotator: str = "ann@test"
) -> pd.DataFrame:
    """One annotation per class present in each map, as the importers write them."""
    rows = []
    for image_id, classes in zip(image_ids, maps, strict=True):
        for class_id in sorted(set(np.unique(classes)) - {0}):
            rows.append(
                {
                    "annotation_id": f"{image_id}#{class_id}",
                    "image_id": image_id,
                    "annotator_id": annotator,
                    "class_id": int(class_id),
                    "height": HEIGHT,
                    "width": WIDTH,
                    "rle": encode_mask(classes == class_id),
                    "z_order": int(class_id),
                    "created_at": pd.Timestamp("2026-12-01", tz="UTC"),
                    "seconds_spent": 10.0,
                    "tool": "test",
                    "tool_version": "1",
                    "assistance": "manual",
                    "premask_id": None,
                    "premask_iou": None,
                    "review_status": "expert_approved",
                    "review_accepted": True,
                    "is_gold": False,
                    "source_file": "test",
                }  # fmt: skip
            )
    return schemas.ANNOTATIONS.frame(rows)


def frame_id(batch: str, camera: str, episode: int, frame: int) -> str:
    return f"{batch}/{layout.frame_image_file(camera, episode, frame).removesuffix('.png')}"


def run_cli(*args: str) -> tuple[int, str, str]:
    completed = subprocess.run(
        [str(Path(sys.executable).with_name("dataset-pipeline")), *args], capture_output=True, text=True
    )
    return completed.returncode, completed.stdout, completed.stderr

"""Read an RLDS / TFDS dataset directory through tensorflow-datasets (in its own environment).

The dataset folder is the one holding ``dataset_info.json``, ``features.json`` and the
``<name>-<split>.tfrecord-NNNNN-of-NNNNN`` shards (``<name>/<version>/`` as TFDS writes it;
the upload may hold it up to two levels down). Episodes are numbered across splits in split
name order; a camera is a 3-channel ``Image`` feature of ``steps/observation``. RLDS carries
no frame rate, so a frame's timestamp is its step number unless the upload's settings give fps.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from dataset_pipeline.formats.environments import run_worker
from dataset_pipeline.formats.robot_dataset import (
    Episode,
    Launcher,
    RobotDatasetError,
    RobotSource,
    SourceFrame,
    check_frame_size,
    find_tfds_directory,
)
from dataset_pipeline.images import DEFAULT_MAX_PIXELS

KIND = "rlds"
#: Frames are read in one worker run for all episodes (one TensorFlow start).
ONE_PASS = True


def directory(root: Path) -> Path:
    found = find_tfds_directory(root)
    if found is None:
        raise RobotDatasetError(f"{root}: no folder with dataset_info.json and features.json")
    return found


def describe(root: Path, *, launcher: Launcher | None = None) -> RobotSource:
    folder = directory(root)
    answer = run_worker("tfds", "describe", {"root": str(folder)}, launcher=launcher)
    if not answer["cameras"]:
        raise RobotDatasetError(f"{folder}: features.json: steps/observation has no 3-channel Image feature")
    for camera, (height, width) in answer["cameras"].items():
        if height and width:
            check_frame_size(
                f"{folder}: steps/observation/{camera}", height, width, max_pixels=DEFAULT_MAX_PIXELS
            )
    return RobotSource(
        kind=KIND,
        version=answer["version"],
        root=str(root),
        cameras=tuple(answer["cameras"]),
        episodes=tuple(Episode(e["index"], e["length"], e["task"]) for e in answer["episodes"]),
        fps=None,
        robot_type=None,
        frame_shapes={c: tuple(s) for c, s in answer["cameras"].items()},
        metadata={
            "name": answer["name"],
            "splits": answer["splits"],
            "episode_splits": {str(e["index"]): [e["split"], e["position"]] for e in answer["episodes"]},
            "tfds_directory": str(folder.relative_to(root)) if folder != root else "",
            "already_segmented": answer["already_segmented"],
        },
    )


def frames(
    root: Path,
    source: RobotSource,
    picks: Mapping[int, Sequence[int]],
    cameras: Sequence[str],
    *,
    launcher: Launcher | None = None,
) -> Iterator[SourceFrame]:
    with tempfile.TemporaryDirectory(prefix="dp-rlds-") as out:
        answer = run_worker(
            "tfds",
            "frames",
            {
                "root": str(directory(root)),
                "picks": {str(k): list(v) for k, v in picks.items()},
                "cameras": list(cameras),
                "out": out,
            },
            launcher=launcher,
        )
        fps = source.fps
        for item in answer["frames"]:
            rgb = np.load(Path(out) / item["file"])
            frame = int(item["frame"])
            yield SourceFrame(
                int(item["episode"]), frame, frame / fps if fps else float(frame), item["camera"], rgb
            )

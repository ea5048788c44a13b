"""LeRobot through lerobot 0.4.4 itself, run in its own environment (``.lerobot-venv``).

lerobot 0.4.4 (the newest for Python 3.11) pins torch 2.10; the project runs 2.14. So this
file is run by that environment's Python as a script (plain subprocess, or Dagster Pipes from
an asset) and imports nothing of the project. One JSON request in, one JSON result out (the
last stdout line ``RESULT {...}``; under Pipes also a custom message).

Commands (``python -m dataset_pipeline.formats.<format>.worker COMMAND REQUEST.json``):

``write-back``  ``datasets.dataset_tools.add_features``: a copy of the dataset with, per frame,
                ``observation.segmentation`` (uint8 [H, W] class ids; one per camera,
                ``observation.segmentation.<camera>``, when several were labelled) and
                ``observation.segmentation_source`` (uint8: 0 none, 1 human, 2 propagated,
                3 model). Videos are copied, not re-encoded. A v2.1 source is first converted
                with ``convert_dataset_v21_to_v30`` (on a copy).
``check``       ``LeRobotDataset`` loads the written dataset; each frame's segmentation equals
                the class map given; every source feature's value is unchanged
``create``      a new v3.0 dataset from frames with ``LeRobotDataset.create`` / ``add_frame`` /
                ``save_episode`` (the demo robot's logger, and the tests')
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from dataset_pipeline.formats.worker_protocol import Problem, mask_file, serve

SEGMENTATION = "observation.segmentation"
SEGMENTATION_SOURCE = "observation.segmentation_source"
MASK_SOURCES = ["none", "human", "propagated", "model"]


def mask_names(cameras: list[str]) -> dict[str, str]:
    """camera -> feature name: ``observation.segmentation`` for one camera, else one per camera."""
    if len(cameras) == 1:
        return {cameras[0]: SEGMENTATION}
    return {c: f"{SEGMENTATION}.{c.rsplit('.', 1)[-1]}" for c in cameras}


def _open(repo_id: str, root: str):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    try:
        return LeRobotDataset(repo_id, root=root, video_backend="pyav")
    except Exception as exc:  # lerobot raises many kinds for a broken dataset
        raise Problem(f"{root}: LeRobotDataset cannot open it ({type(exc).__name__}: {exc})") from None


def _masks(folder: Path, camera: str, episode: int, length: int, shape: list[int]):
    import numpy as np

    path = folder / mask_file(episode, camera)
    if path.exists():
        with np.load(path) as data:
            masks, sources = data["masks"], data["sources"]
        if masks.shape != (length, *shape):
            raise Problem(
                f"{path}: class maps of shape {masks.shape}, episode {episode} needs {(length, *shape)}"
            )
        return masks, sources
    return np.zeros((length, *shape), np.uint8), np.zeros(length, np.uint8)


def _as_v30(request: dict, scratch: Path) -> str:
    """The source's root as v3.0: itself, or a converted copy of a v2.1 dataset."""
    info = json.loads((Path(request["root"]) / "meta" / "info.json").read_text())
    if info.get("codebase_version") == "v3.0":
        return request["root"]
    from lerobot.datasets.v30.convert_dataset_v21_to_v30 import convert_dataset

    copy = scratch / "v21" / request["repo_id"]
    shutil.copytree(request["root"], copy)
    try:
        convert_dataset(
            request["repo_id"], root=str(scratch / "v21"), push_to_hub=False, force_conversion=True
        )
    except Exception as exc:
        raise Problem(
            f"{request['root']}: the v2.1 to v3.0 conversion failed ({type(exc).__name__}: {exc})"
        ) from None
    return str(copy)


def write_back(request: dict) -> dict:
    from lerobot.datasets.dataset_tools import add_features

    masks_dir = Path(request["masks"])
    cameras = list(request["shapes"])
    with tempfile.TemporaryDirectory(prefix="dp-lerobot-") as scratch:
        root = _as_v30(request, Path(scratch))
        dataset = _open(request["repo_id"], root)
        taken = [k for k in dataset.meta.features if k == SEGMENTATION or k.startswith(SEGMENTATION + ".")]
        if taken:
            raise Problem(f"{request['root']}: the dataset already has feature {taken[0]!r}; refused")
        lengths = {int(e["episode_index"]): int(e["length"]) for e in dataset.meta.episodes}
        cache: dict[tuple[str, int], tuple] = {}

        def maps(camera: str, episode: int):
            key = (camera, episode)
            if key not in cache:
                cache.clear() if len(cache) > 8 else None
                cache[key] = _masks(masks_dir, camera, episode, lengths[episode], request["shapes"][camera])
            return cache[key]

        features: dict[str, tuple[Any, dict[str, Any]]] = {}
        for camera, name in mask_names(cameras).items():
            height, width = request["shapes"][camera]
            features[name] = (
                lambda row, episode, frame, camera=camera: maps(camera, int(episode))[0][int(frame)],
                {"dtype": "uint8", "shape": (height, width), "names": ["height", "width"]},
            )
        features[SEGMENTATION_SOURCE] = (
            lambda row, episode, frame: int(max(int(maps(c, int(episode))[1][int(frame)]) for c in cameras)),
            {"dtype": "uint8", "shape": (1,), "names": None},
        )
        out = Path(request["out"])
        if out.exists():
            shutil.rmtree(out)
        try:
            written = add_features(dataset, features, output_dir=str(out), repo_id=request["repo_id"])
        except ValueError as exc:
            raise Problem(f"{request['root']}: lerobot refused the new features ({exc})") from None
        # Name the codes of the source flag and the classes where a trainer finds them.
        legend = {
            "observation.segmentation_source": MASK_SOURCES,
            "class_names": request.get("class_names", []),
        }
        (out / "meta" / "segmentation.json").write_text(json.dumps(legend, indent=2))
        return {
            "episodes": int(written.meta.total_episodes),
            "frames": int(written.meta.total_frames),
            "features": sorted(features),
            "converted_from": None if root == request["root"] else "v2.1",
        }


def check(request: dict) -> dict:
    """Load with LeRobotDataset; compare segmentation and flags per frame, and every source column."""
    import numpy as np

    written = _open(request["repo_id"], request["written"])
    problems: list[str] = []
    names = mask_names(list(request["shapes"]))
    rows = written.hf_dataset.with_format(None)
    masks_dir = Path(request["masks"])
    lengths = {int(e["episode_index"]): int(e["length"]) for e in written.meta.episodes}
    if request.get("frames") is not None and len(rows) != int(request["frames"]):
        problems.append(f"{len(rows)} frames read back, {request['frames']} expected")
    episodes: dict[int, dict] = {}
    labelled: list[int] = []
    for i in range(len(rows)):
        row = rows[i]
        episode, frame = int(row["episode_index"]), int(row["frame_index"])
        if episode not in episodes:
            episodes = {
                episode: {
                    c: _masks(masks_dir, c, episode, lengths[episode], request["shapes"][c]) for c in names
                }
            }
        flag = 0
        for camera, name in names.items():
            masks, sources = episodes[episode][camera]
            if not np.array_equal(np.asarray(row[name], np.uint8), masks[frame]):
                problems.append(f"episode {episode}, frame {frame}: {name} differs from the class map")
            flag = max(flag, int(sources[frame]))
        if int(np.asarray(row[SEGMENTATION_SOURCE]).ravel()[0]) != flag:
            problems.append(f"episode {episode}, frame {frame}: {SEGMENTATION_SOURCE} differs")
        if flag:
            labelled.append(i)
        if len(problems) > 20:
            break
    # The library's own item access (videos decoded, transforms applied) on labelled frames.
    for i in labelled[:: max(1, len(labelled) // 8)][:8]:
        item = written[i]
        for camera, name in names.items():
            episode, frame = int(item["episode_index"]), int(item["frame_index"])
            masks, _ = _masks(masks_dir, camera, episode, lengths[episode], request["shapes"][camera])
            if not np.array_equal(item[name].numpy().astype(np.uint8), masks[frame]):
                problems.append(f"LeRobotDataset[{i}]: {name} differs from the class map")
    if request.get("source"):
        with tempfile.TemporaryDirectory(prefix="dp-lerobot-") as scratch:
            source = _open(request["repo_id"], _as_v30({**request, "root": request["source"]}, Path(scratch)))
            theirs = source.hf_dataset.with_format(None)
            if len(theirs) != len(rows):
                problems.append(f"{len(rows)} frames, the source has {len(theirs)}")
            else:
                for column in theirs.column_names:
                    if column not in rows.column_names:
                        problems.append(f"source feature {column!r} is missing")
                    elif rows[column] != theirs[column]:
                        problems.append(f"source feature {column!r} changed")
            for key in source.meta.video_keys:
                for episode in range(source.meta.total_episodes):
                    path = source.meta.get_video_file_path(episode, key)
                    if (Path(source.root) / path).read_bytes() != (Path(written.root) / path).read_bytes():
                        problems.append(f"video {path} is not a copy of the source's")
                        break
            if [dict(t) for t in source.meta.tasks.reset_index().to_dict("records")] != [
                dict(t) for t in written.meta.tasks.reset_index().to_dict("records")
            ]:
                problems.append("the tasks differ from the source's")
    return {"frames": len(rows), "episodes": int(written.meta.total_episodes), "problems": problems[:20]}


def create(request: dict) -> dict:
    """Write a v3.0 dataset with lerobot's recorder API; joint states and actions are synthetic."""
    import numpy as np
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    height, width = request["shape"]
    camera = request.get("camera", "observation.images.front")
    use_videos = bool(request.get("use_videos", True))
    features = {
        camera: {
            "dtype": "video" if use_videos else "image",
            "shape": (height, width, 3),
            "names": ["height", "width", "channels"],
        },
        "observation.state": {"dtype": "float32", "shape": (6,), "names": [f"joint_{j}" for j in range(6)]},
        "action": {"dtype": "float32", "shape": (6,), "names": [f"joint_{j}" for j in range(6)]},
    }
    root = Path(request["root"])
    if root.exists():
        shutil.rmtree(root)
    dataset = LeRobotDataset.create(
        request["repo_id"],
        fps=int(request["fps"]),
        features=features,
        root=str(root),
        robot_type=request.get("robot_type", "so100"),
        use_videos=use_videos,
        vcodec=request.get("vcodec", "libsvtav1"),
    )
    folder = Path(request["frames_dir"])
    for number, episode in enumerate(request["episodes"]):
        phase = np.linspace(0, 2 * np.pi, 6, endpoint=False) + number
        for step, name in enumerate(episode["frames"]):
            rgb = np.load(folder / name)
            t = step / float(request["fps"])
            state = np.sin(phase + t).astype(np.float32)
            dataset.add_frame(
                {
                    camera: rgb,
                    "observation.state": state,
                    "action": np.sin(phase + t + 1.0 / request["fps"]).astype(np.float32),
                    "task": episode["task"],
                }
            )
        dataset.save_episode()
    dataset.finalize()
    return {"episodes": len(request["episodes"]), "frames": int(dataset.meta.total_frames), "root": str(root)}


COMMANDS = {"write-back": write_back, "check": check, "create": create}


if __name__ == "__main__":
    sys.exit(serve(COMMANDS, sys.argv[1:]))

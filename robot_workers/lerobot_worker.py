"""LeRobot through lerobot 0.4.4 itself, run in its own environment (``.lerobot-venv``).

lerobot 0.4.4 (the newest for Python 3.11) pins torch 2.10; the project runs 2.14. So this
file is run by that environment's Python as a script (plain subprocess, or Dagster Pipes from
an asset) and imports nothing of the project. One JSON request in, one JSON result out (the
last stdout line ``RESULT {...}``; under Pipes also a custom message).

Commands (``python -m dataset_pipeline.formats.<format>.worker COMMAND REQUEST.json``):

``write-back``  a copy of the dataset with, per frame, ``observation.segmentation`` (uint8 [H, W]
                class ids; one per camera, ``observation.segmentation.<camera>``, when several
                were labelled) and ``observation.segmentation_source`` (uint8: 0 none, 1 human,
                2 propagated, 3 model): lerobot's metadata and features (as its ``add_features``
                makes them), the rows streamed through Arrow in batches; videos copied, not
                re-encoded. A v2.1 source is first converted with ``convert_dataset_v21_to_v30``
                (on a copy).
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

from robot_workers.protocol import Problem, load_masks, serve

SEGMENTATION = "observation.segmentation"
SEGMENTATION_SOURCE = "observation.segmentation_source"
MASK_SOURCES = ["none", "human", "propagated", "model"]
#: Rows per Arrow batch of the write-back: Parquet's nested encoding of a batch's class maps costs
#: ~4x their bytes while written (64 frames of 640x480: ~80 MB).
ROWS_PER_BATCH = 64


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


def _nested(maps):
    """(N, H, W) uint8 as Arrow ``list<list<uint8>>``, the storage of a Hugging Face Array2D,
    built from the array's buffer (no Python list per pixel)."""
    import numpy as np
    import pyarrow as pa

    n, height, width = maps.shape
    rows = pa.ListArray.from_arrays(
        pa.array(np.arange(0, n * height * width + 1, width, dtype=np.int32)), pa.array(maps.reshape(-1))
    )
    return pa.ListArray.from_arrays(pa.array(np.arange(0, n * height + 1, height, dtype=np.int32)), rows)


def write_back(request: dict) -> dict:
    """The copy, file by file and batch by batch: each data file's rows gain the class maps and
    the flag (Arrow, in batches of ``ROWS_PER_BATCH`` rows, so memory stays flat in the dataset's size); lerobot
    makes the new metadata (``LeRobotDatasetMetadata.create`` with the new features), maps them to
    Hugging Face features, and copies the episodes' metadata, stats and tasks as its
    ``add_features`` does; videos are copied byte for byte. ``check`` then opens it with
    ``LeRobotDataset``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from lerobot.datasets.dataset_tools import _copy_episodes_metadata_and_stats
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata
    from lerobot.datasets.utils import get_hf_features_from_features

    cameras = list(request["shapes"])
    names = mask_names(cameras)
    with tempfile.TemporaryDirectory(prefix="dp-lerobot-") as scratch:
        root = Path(_as_v30(request, Path(scratch)))
        dataset = _open(request["repo_id"], str(root))
        taken = [k for k in dataset.meta.features if k == SEGMENTATION or k.startswith(SEGMENTATION + ".")]
        if taken:
            raise Problem(f"{request['root']}: the dataset already has feature {taken[0]!r}; refused")
        lengths = {int(e["episode_index"]): int(e["length"]) for e in dataset.meta.episodes}
        added: dict[str, dict[str, Any]] = {
            name: {"dtype": "uint8", "shape": tuple(request["shapes"][c]), "names": ["height", "width"]}
            for c, name in names.items()
        }
        added[SEGMENTATION_SOURCE] = {"dtype": "uint8", "shape": (1,), "names": None}
        out = Path(request["out"])
        if out.exists():
            shutil.rmtree(out)
        meta = LeRobotDatasetMetadata.create(
            repo_id=request["repo_id"],
            fps=dataset.meta.fps,
            features={**dataset.meta.features, **added},
            robot_type=dataset.meta.robot_type,
            root=out,
            use_videos=len(dataset.meta.video_keys) > 0,
        )
        hf_features = get_hf_features_from_features(meta.features)
        cache: dict[tuple[str, int], tuple] = {}

        def maps(camera: str, episode: int):
            if (camera, episode) not in cache:
                for key in [k for k in cache if k[1] != episode]:  # rows come episode by episode
                    del cache[key]
                cache[(camera, episode)] = load_masks(
                    request, episode, camera, lengths[episode], request["shapes"][camera]
                )
            return cache[(camera, episode)]

        files = sorted((root / "data").glob("*/*.parquet"))
        if not files:
            raise Problem(f"{request['root']}: data/ holds no Parquet file")
        frames = 0
        for path in files:
            source = pq.ParquetFile(path)
            columns = [*source.schema_arrow.names, *added]
            features = {name: hf_features[name] for name in columns}
            metadata = {b"huggingface": json.dumps({"info": {"features": _features_json(features)}}).encode()}
            schema = pa.schema(
                [*source.schema_arrow, *[pa.field(n, pa.list_(pa.list_(pa.uint8()))) for n in names.values()],
                 pa.field(SEGMENTATION_SOURCE, pa.uint8())],
                metadata=metadata,
            )  # fmt: skip
            target = out / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            with pq.ParquetWriter(target, schema, compression="snappy", use_dictionary=True) as writer:
                for batch in source.iter_batches(batch_size=ROWS_PER_BATCH):
                    episodes = batch.column("episode_index").to_numpy()
                    indices = batch.column("frame_index").to_numpy()
                    arrays = list(batch.columns)
                    flag = np.zeros(len(batch), np.uint8)
                    for camera in names:
                        stacked = np.stack(
                            [maps(camera, int(e))[0][int(f)] for e, f in zip(episodes, indices, strict=True)]
                        )
                        flag = np.maximum(
                            flag,
                            [maps(camera, int(e))[1][int(f)] for e, f in zip(episodes, indices, strict=True)],
                        )
                        arrays.append(_nested(stacked.astype(np.uint8)))
                    arrays.append(pa.array(flag.astype(np.uint8)))
                    writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
                    frames += len(batch)
        for key in dataset.meta.video_keys:
            for video in sorted((root / "videos" / key).rglob("*.mp4")):
                copy = out / video.relative_to(root)
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(video, copy)
        _copy_episodes_metadata_and_stats(dataset, meta)
        # Name the codes of the source flag and the classes where a trainer finds them.
        legend = {
            "observation.segmentation_source": MASK_SOURCES,
            "class_names": request.get("class_names", []),
        }
        (out / "meta" / "segmentation.json").write_text(json.dumps(legend, indent=2))
        return {
            "episodes": int(dataset.meta.total_episodes),
            "frames": frames,
            "features": sorted(added),
            "converted_from": None if str(root) == request["root"] else "v2.1",
        }


def _features_json(features: dict) -> dict:
    """Hugging Face features as their ``huggingface`` schema metadata spells them."""
    import datasets

    return datasets.Features(features).to_dict()


def _maps_column(table, name: str, shape: list[int]):
    """A ``[H, W]`` feature of a table's frames as one (N, H, W) array (the Arrow lists flattened;
    Hugging Face loads it as an Array2D extension array, whose storage they are)."""
    import numpy as np
    import pyarrow as pa

    column = table.column(name).combine_chunks()
    if isinstance(column, pa.ExtensionArray):
        column = column.storage
    values = column.flatten().flatten().to_numpy(zero_copy_only=False)
    return values.astype(np.uint8).reshape(len(column), *shape)


def check(request: dict) -> dict:
    """Open the copy with LeRobotDataset: every frame's segmentation and flag equal the class maps
    given (the table lerobot loaded, all frames; its item access, on labelled frames); every source
    column equal (Arrow equality), videos byte-identical, tasks unchanged."""
    import numpy as np

    written = _open(request["repo_id"], request["written"])
    problems: list[str] = []
    names = mask_names(list(request["shapes"]))
    table = written.hf_dataset.data.table
    lengths = {int(e["episode_index"]): int(e["length"]) for e in written.meta.episodes}
    if request.get("frames") is not None and table.num_rows != int(request["frames"]):
        problems.append(f"{table.num_rows} frames read back, {request['frames']} expected")
    episodes = table.column("episode_index").to_numpy()
    frames = table.column("frame_index").to_numpy()
    flags = table.column(SEGMENTATION_SOURCE).to_numpy().ravel()
    expected_flags = np.zeros(table.num_rows, np.int64)
    for camera, name in names.items():
        shape = request["shapes"][camera]
        for episode in np.unique(episodes):
            rows = np.flatnonzero(episodes == episode)  # an episode's rows are contiguous in v3.0
            got = _maps_column(table.slice(int(rows[0]), int(rows[-1] - rows[0] + 1)), name, shape)
            got = got[rows - rows[0]]
            masks, sources = load_masks(request, int(episode), camera, lengths[int(episode)], shape)
            expected = masks[frames[rows]]
            differ = np.flatnonzero((got != expected).reshape(len(rows), -1).any(axis=1))
            problems += [
                f"episode {episode}, frame {frames[rows[i]]}: {name} differs from the class map"
                for i in differ
            ]
            expected_flags[rows] = np.maximum(expected_flags[rows], sources[frames[rows]])
    for i in np.flatnonzero(flags != expected_flags)[:5]:
        problems.append(f"episode {episodes[i]}, frame {frames[i]}: {SEGMENTATION_SOURCE} differs")
    # The library's own item access (videos decoded, transforms applied) on labelled frames.
    labelled = np.flatnonzero(expected_flags)
    for i in labelled[:: max(1, len(labelled) // 8)][:8]:
        item = written[int(i)]
        for camera, name in names.items():
            episode, frame = int(item["episode_index"]), int(item["frame_index"])
            masks, _ = load_masks(request, episode, camera, lengths[episode], request["shapes"][camera])
            if not np.array_equal(item[name].numpy().astype(np.uint8), masks[frame]):
                problems.append(f"LeRobotDataset[{i}]: {name} differs from the class map")
    if request.get("source"):
        with tempfile.TemporaryDirectory(prefix="dp-lerobot-") as scratch:
            source = _open(request["repo_id"], _as_v30({**request, "root": request["source"]}, Path(scratch)))
            theirs = source.hf_dataset.data.table
            if theirs.num_rows != table.num_rows:
                problems.append(f"{table.num_rows} frames, the source has {theirs.num_rows}")
            else:
                for column in theirs.column_names:
                    if column not in table.column_names:
                        problems.append(f"source feature {column!r} is missing")
                    elif not table.column(column).equals(theirs.column(column)):
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
    return {"frames": table.num_rows, "episodes": int(written.meta.total_episodes), "problems": problems[:20]}


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

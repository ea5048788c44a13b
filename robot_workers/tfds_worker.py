"""RLDS / TFDS through tensorflow-datasets, run in its own environment (``.tfds-venv``).

tensorflow-cpu pins protobuf and h5py versions the project's environment does not share, so
this file is run by that environment's Python as a script (plain subprocess, or Dagster Pipes
from an asset); it imports nothing of the project. Input and output are files and one JSON
result: printed as the last stdout line ``RESULT {...}`` and, under Pipes, reported as a
custom message.

Commands (``python -m dataset_pipeline.formats.<format>.worker COMMAND REQUEST.json``):

``describe``    episodes (split, position, length, task), cameras (3-channel ``Image`` features of
                ``steps/observation``) and their shapes, the builder's name, version, metadata
``frames``      the picked steps' RGB as ``.npy`` files in ``out``
``write-back``  the dataset with ``steps/observation/segmentation_mask`` (uint8 HxW, zlib) and
                ``segmentation_source`` (ClassLabel none/human/propagated/model) per step; every
                other feature's value as stored (images are passed through as their encoded bytes)
``export``      a new RLDS dataset from episode folders of PNG/JPEG frames and class maps
``check``       read a written dataset back and compare it with the masks (and the source)
"""

from __future__ import annotations

import sys
from pathlib import Path

from robot_workers.protocol import Problem, load_masks, serve

MASK_SOURCES = ["none", "human", "propagated", "model"]
SEGMENTATION = "segmentation_mask"
SEGMENTATION_SOURCE = "segmentation_source"


def _tfds():
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow_datasets as tfds

    tfds.disable_progress_bar()
    return tfds


def _builder(root: str):
    tfds = _tfds()
    try:
        return tfds.builder_from_directory(root)
    except Exception as exc:  # tfds raises many kinds for a broken directory
        raise Problem(
            f"{root}: not a readable TFDS dataset directory ({type(exc).__name__}: {exc})"
        ) from None


def _observation(builder):
    features = builder.info.features
    if "steps" not in features:
        raise Problem(f"{builder.data_dir}: features.json has no 'steps' (not an RLDS dataset)")
    step = features["steps"].feature
    if "observation" not in step or not hasattr(step["observation"], "items"):
        raise Problem(f"{builder.data_dir}: steps has no 'observation' features dict")
    return step["observation"]


def _cameras(builder) -> dict[str, list[int]]:
    tfds = _tfds()
    cameras = {}
    for name, feature in _observation(builder).items():
        if isinstance(feature, tfds.features.Image) and feature.shape[-1] == 3:
            cameras[name] = [int(s) if s is not None else 0 for s in feature.shape[:2]]
    return cameras


def _decoders(builder):
    """Skip decoding every image, so images are carried as their stored bytes."""
    tfds = _tfds()

    def walk(feature):
        if isinstance(feature, tfds.features.Image):
            return tfds.decode.SkipDecoding()
        if isinstance(feature, tfds.features.Dataset):
            inner = walk(feature.feature)
            return inner
        if isinstance(feature, tfds.features.FeaturesDict):
            found = {k: walk(v) for k, v in feature.items()}
            found = {k: v for k, v in found.items() if v is not None}
            return found or None
        return None

    return walk(builder.info.features) or None


def _split_episodes(builder, split: str, first_index: int):
    """(global index, split, position, episode) of one split, steps as a list of dicts; images
    kept as their stored bytes."""
    tfds = _tfds()
    position = 0
    try:
        ds = builder.as_dataset(split=split, shuffle_files=False, decoders=_decoders(builder))
        for position, episode in enumerate(tfds.as_numpy(ds)):
            episode = dict(episode)
            episode["steps"] = [dict(step) for step in episode["steps"]]
            yield first_index + position, split, position, episode
    except Problem:
        raise
    except Exception as exc:  # a missing or truncated shard surfaces as one of TensorFlow's errors
        message = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise Problem(
            f"{builder.data_dir}: split {split!r}, episode {first_index + position} (position {position}): "
            f"the shards cannot be read ({type(exc).__name__}: {message})"
        ) from None


def _first_indices(builder) -> dict[str, int]:
    """Episodes are numbered across splits in split-name order: each split's first number."""
    first, total = {}, 0
    for split in sorted(builder.info.splits):
        first[split] = total
        total += int(builder.info.splits[split].num_examples)
    return first


def _episodes(builder):
    """Every episode, split by split (see :func:`_split_episodes`), one at a time."""
    for split, first in _first_indices(builder).items():
        yield from _split_episodes(builder, split, first)


def _task(steps) -> str:
    for key in ("language_instruction", "instruction", "task"):
        if steps and key in steps[0]:
            value = steps[0][key]
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return ""


def describe(request: dict) -> dict:
    builder = _builder(request["root"])
    cameras = _cameras(builder)
    episodes = []
    for index, split, position, episode in _episodes(builder):
        episodes.append(
            {
                "index": index,
                "split": split,
                "position": position,
                "length": len(episode["steps"]),
                "task": _task(episode["steps"]),
            }
        )
    return {
        "name": builder.name,
        "version": str(builder.info.version),
        "cameras": cameras,
        "episodes": episodes,
        "splits": {k: int(v.num_examples) for k, v in builder.info.splits.items()},
        "description": (builder.info.description or "")[:500],
        "already_segmented": SEGMENTATION in _observation(builder),
    }


def frames(request: dict) -> dict:
    import numpy as np

    builder = _builder(request["root"])
    picks = {int(k): set(v) for k, v in request["picks"].items()}
    out = Path(request["out"])
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for index, _split, _position, episode in _episodes(builder):
        wanted = picks.get(index)
        if not wanted:
            continue
        for frame, step in enumerate(episode["steps"]):
            if frame not in wanted:
                continue
            for camera in request["cameras"]:
                data = step["observation"][camera]
                try:
                    import tensorflow as tf

                    rgb = tf.io.decode_image(data, channels=3, expand_animations=False).numpy()
                except Exception as exc:
                    raise Problem(
                        f"{request['root']}: episode {index}, frame {frame}, field "
                        f"steps/observation/{camera}: not a decodable image ({exc})"
                    ) from None
                name = f"{index}_{frame}_{camera}.npy"
                np.save(out / name, np.asarray(rgb, dtype=np.uint8))
                written.append({"episode": index, "frame": frame, "camera": camera, "file": name})
    return {"frames": written}


def _segmented_features(builder, shapes: dict[str, list[int]]):
    """The source's features with a class map and its source flag per camera in steps/observation."""
    import numpy as np

    tfds = _tfds()
    top = dict(builder.info.features.items())
    step = dict(top["steps"].feature.items())
    observation = dict(step["observation"].items())
    for name, (height, width) in _mask_names(shapes).items():
        observation[name] = tfds.features.Tensor(
            shape=(height, width), dtype=np.uint8, encoding=tfds.features.Encoding.ZLIB
        )
        observation[name.replace(SEGMENTATION, SEGMENTATION_SOURCE)] = tfds.features.ClassLabel(
            names=MASK_SOURCES
        )
    step["observation"] = tfds.features.FeaturesDict(observation)
    top["steps"] = tfds.features.Dataset(step)
    return tfds.features.FeaturesDict(top)


def _mask_names(shapes: dict[str, list[int]]) -> dict[str, list[int]]:
    """``segmentation_mask`` for one camera; ``segmentation_mask_<camera>`` for each of several."""
    if len(shapes) == 1:
        return {SEGMENTATION: next(iter(shapes.values()))}
    return {f"{SEGMENTATION}_{camera}": shape for camera, shape in shapes.items()}


def write_back(request: dict) -> dict:
    tfds = _tfds()
    builder = _builder(request["root"])
    shapes = {c: s for c, s in request["shapes"].items()}
    if SEGMENTATION in _observation(builder) or any(
        k.startswith(SEGMENTATION) for k in _observation(builder)
    ):
        raise Problem(f"{request['root']}: steps/observation already has a {SEGMENTATION}; refused")
    features = _segmented_features(builder, shapes)
    names = _mask_names(shapes)
    counts = {"episodes": 0, "steps": 0}

    def segmented(split: str, first: int):
        """The split's episodes with their class maps, one at a time (never the dataset in memory)."""
        for index, _split, _position, episode in _split_episodes(builder, split, first):
            steps = episode["steps"]
            for (name, shape), camera in zip(names.items(), shapes, strict=True):
                masks, sources = load_masks(request, index, camera, len(steps), shape)
                for frame, step in enumerate(steps):
                    step["observation"] = dict(step["observation"])
                    step["observation"][name] = masks[frame]
                    step["observation"][name.replace(SEGMENTATION, SEGMENTATION_SOURCE)] = int(sources[frame])
            counts["episodes"] += 1
            counts["steps"] += len(steps)
            yield f"{index:08d}", episode

    by_split = {split: segmented(split, first) for split, first in _first_indices(builder).items()}
    tfds.dataset_builders.store_as_tfds_dataset(
        name=builder.name,
        version=str(builder.info.version),
        features=features,
        split_datasets=by_split,
        data_dir=request["out"],
        description=(builder.info.description or "")
        + "\n\nWith per-step segmentation class maps (dataset_pipeline).",
        disable_shuffling=True,
    )
    return {**counts, "directory": str(Path(request["out"]) / builder.name / str(builder.info.version))}


def export(request: dict) -> dict:
    """A new RLDS dataset: one episode per ``episodes[i]`` (frames with image file, class map, times)."""
    import numpy as np

    tfds = _tfds()
    height, width = request["shape"]
    features = tfds.features.FeaturesDict(
        {
            "steps": tfds.features.Dataset(
                {
                    "observation": tfds.features.FeaturesDict(
                        {
                            "image": tfds.features.Image(
                                shape=(height, width, 3), encoding_format=request.get("encoding", "png")
                            ),
                            SEGMENTATION: tfds.features.Tensor(
                                shape=(height, width), dtype=np.uint8, encoding=tfds.features.Encoding.ZLIB
                            ),
                            SEGMENTATION_SOURCE: tfds.features.ClassLabel(names=MASK_SOURCES),
                        }
                    ),
                    "timestamp": tfds.features.Scalar(dtype=np.float64),
                    "frame_index": tfds.features.Scalar(dtype=np.int64),
                    "image_id": tfds.features.Text(),
                    "is_first": tfds.features.Scalar(dtype=np.bool_),
                    "is_last": tfds.features.Scalar(dtype=np.bool_),
                    "is_terminal": tfds.features.Scalar(dtype=np.bool_),
                }
            ),
            "episode_metadata": tfds.features.FeaturesDict(
                {
                    "episode_id": tfds.features.Text(),
                    "scene_id": tfds.features.Text(),
                    "split": tfds.features.Text(),
                }
            ),
        }
    )
    folder = Path(request["episodes_dir"])

    def episode(number: int, meta: dict) -> dict:
        with np.load(folder / meta["masks"]) as data:
            masks, sources = data["masks"], data["sources"]
        n = len(meta["frames"])
        steps = [
            {
                "observation": {
                    "image": (folder / f["image"]).read_bytes(),
                    SEGMENTATION: masks[i],
                    SEGMENTATION_SOURCE: int(sources[i]),
                },
                "timestamp": float(f["timestamp"]),
                "frame_index": int(f["frame_index"]),
                "image_id": f["image_id"],
                "is_first": i == 0,
                "is_last": i == n - 1,
                "is_terminal": False,
            }
            for i, f in enumerate(meta["frames"])
        ]
        return {"steps": steps, "episode_metadata": {k: meta[k] for k in ("episode_id", "scene_id", "split")}}

    def split_episodes(split: str):
        """One split's episodes, read one at a time (the release is never held in memory)."""
        for number, meta in enumerate(request["episodes"]):
            if meta["split"] == split:
                yield f"{number:08d}", episode(number, meta)

    by_split = {
        split: split_episodes(split) for split in dict.fromkeys(m["split"] for m in request["episodes"])
    }
    tfds.dataset_builders.store_as_tfds_dataset(
        name=request["name"],
        version=request.get("version", "1.0.0"),
        features=features,
        split_datasets=by_split,
        data_dir=request["out"],
        disable_shuffling=True,
        description=request.get("description", ""),
    )
    return {
        "episodes": len(request["episodes"]),
        "directory": str(Path(request["out"]) / request["name"] / request.get("version", "1.0.0")),
    }


def _equal(a, b) -> bool:
    import numpy as np

    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return bool(np.array_equal(np.asarray(a), np.asarray(b)))


def check(request: dict) -> dict:
    """Read the written dataset with ``builder_from_directory``: every episode, every step; the
    class maps equal the masks given, and (for a write-back) every other value equals the source's."""
    builder = _builder(request["written"])
    names = _mask_names(request["shapes"])
    problems: list[str] = []
    source_episodes = _episodes(_builder(request["source"])) if request.get("source") else None
    count = steps_total = 0
    for index, split, _position, episode in _episodes(builder):
        count += 1
        steps = episode["steps"]
        steps_total += len(steps)
        original = next(source_episodes, None) if source_episodes is not None else None
        for (name, shape), camera in zip(names.items(), request["shapes"], strict=True):
            masks, sources = load_masks(request, index, camera, len(steps), shape)
            for frame, step in enumerate(steps):
                if not _equal(step["observation"][name], masks[frame]):
                    problems.append(
                        f"episode {index} ({split}), step {frame}: steps/observation/{name} differs"
                    )
                flag = name.replace(SEGMENTATION, SEGMENTATION_SOURCE)
                if int(step["observation"][flag]) != int(sources[frame]):
                    problems.append(
                        f"episode {index} ({split}), step {frame}: steps/observation/{flag} differs"
                    )
        if original is not None:
            original_steps = original[3]["steps"]
            if len(original_steps) != len(steps):
                problems.append(f"episode {index}: {len(steps)} steps, the source has {len(original_steps)}")
            for frame, (mine, theirs) in enumerate(zip(steps, original_steps, strict=False)):
                mine = dict(mine)
                mine["observation"] = {
                    k: v
                    for k, v in mine["observation"].items()
                    if not k.startswith((SEGMENTATION, SEGMENTATION_SOURCE))
                }
                if not _equal(mine, theirs):
                    problems.append(f"episode {index}, step {frame}: a source feature's value changed")
            rest = {k: v for k, v in episode.items() if k != "steps"}
            if not _equal(rest, {k: v for k, v in original[3].items() if k != "steps"}):
                problems.append(f"episode {index}: an episode-level feature changed")
        if len(problems) > 20:
            break
    if request.get("episodes") is not None and count != int(request["episodes"]):
        problems.append(f"{count} episodes read back, {request['episodes']} expected")
    return {"episodes": count, "steps": steps_total, "problems": problems[:20]}


COMMANDS = {
    "describe": describe,
    "frames": frames,
    "write-back": write_back,
    "export": export,
    "check": check,
}


if __name__ == "__main__":
    sys.exit(serve(COMMANDS, sys.argv[1:]))

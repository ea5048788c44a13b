"""LeRobot datasets (codebase v3.0 layout), one per split, with a frame-aligned ``observation.segmentation`` feature.

Under ``lerobot/<split>/`` (each a whole dataset: ``LeRobotDataset(repo_id, root=".../lerobot/train")``)::

    meta/info.json                                   codebase_version v3.0, fps, features, splits
    meta/tasks.parquet                               task text (index) -> task_index
    meta/episodes/chunk-000/file-000.parquet         per episode: length, data file, frame range
    meta/stats.json                                  numeric features' min / max / mean / std
    meta/frames.parquet                              ours: global index -> image_id, split
    data/chunk-000/file-<k>.parquet                  one row per frame, whole episodes

Per frame: ``observation.images.<camera>`` (dtype ``image``: the capture's own encoded bytes,
as Hugging Face ``datasets`` stores an Image: ``{bytes, path}``), ``observation.segmentation``
(dtype ``uint8``, shape [H, W]: class ids as a plain array, never video - lossy codecs
blend neighbouring ids - and never an ``image`` feature, which LeRobot would scale to
[0, 1]), ``timestamp`` (seconds since the episode's first frame), ``frame_index``,
``episode_index``, ``index``, ``task_index``. Captures carry no language instruction, so
the task text is ``"scene <scene_id>"``. The camera key is the camera_model when every frame
shares one, else ``rgb``. Frames without an episode_id are in no trajectory.

Why a dataset per split, in arrival order: LeRobot's ``index`` and ``episode_index`` are global
over a dataset and written into every data file, and ``info.json`` gives a split as one episode
range. One dataset over all splits would renumber every later file whenever a batch adds a
training episode. Per split, the episodes the earlier release held keep their numbers, order
and data files (linked, not made again: :meth:`ReleaseFolder.reuse`) and new episodes are
appended in files of their own, so a release that adds 1% of the episodes makes about 1% of
the data files; tasks are numbered in order of first appearance for the same reason.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import TYPE_CHECKING

import numpy as np

from dataset_pipeline.formats.exporting import ReleaseFolder
from dataset_pipeline.formats.release_content import ExportError, ReleaseContent
from dataset_pipeline.formats.trajectories import camera_key, episode_seconds, episodes

if TYPE_CHECKING:
    import pandas as pd

NAME = "lerobot"
ROOT = "lerobot"
CODEBASE_VERSION = "v3.0"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
EPISODES_FILE = "meta/episodes/chunk-000/file-000.parquet"
FRAMES_FILE = "meta/frames.parquet"
FRAMES_PER_FILE = 1000
SEGMENTATION = "observation.segmentation"


def split_root(split: str) -> str:
    """``lerobot/<split>``: the folder of one split's dataset."""
    return f"{ROOT}/{split}"


def data_file(split: str, file_index: int) -> str:
    return f"{split_root(split)}/" + DATA_PATH.format(chunk_index=0, file_index=file_index)


def _split_trajectories(content: ReleaseContent) -> dict[str, list[pd.DataFrame]]:
    found: dict[str, list[pd.DataFrame]] = {}
    for trajectory in episodes(content):
        found.setdefault(str(trajectory.split.iloc[0]), []).append(trajectory)
    return found


def _earlier_files(out: ReleaseFolder, split: str) -> dict[str, int]:
    """episode_id -> data file of each episode in the earlier release's dataset of ``split``, in
    that dataset's episode order ({} without an earlier release)."""
    import pyarrow.parquet as pq

    data = out.read_earlier(f"{split_root(split)}/{EPISODES_FILE}")
    if data is None:
        return {}
    table = pq.read_table(io.BytesIO(data), columns=["episode_id", "data/file_index"])
    ids, files = table.column("episode_id").to_pylist(), table.column("data/file_index").to_pylist()
    return {str(e): int(f) for e, f in zip(ids, files, strict=True)}


def arrival_order(trajectories: list[pd.DataFrame], earlier: dict[str, int]) -> list[pd.DataFrame]:
    """The earlier release's episodes in its order, then the new ones by episode_id."""
    rank = {episode_id: i for i, episode_id in enumerate(earlier)}
    return sorted(
        trajectories,
        key=lambda t: (rank.get(str(t.episode_id.iloc[0]), len(rank)), str(t.episode_id.iloc[0])),
    )


def data_files(lengths: list[int], earlier_file: list[int | None]) -> list[list[int]]:
    """Episode positions per data file: an earlier episode stays with the episodes it shared a file
    with; new episodes (``None``) fill files of their own, whole, up to FRAMES_PER_FILE frames.

    >>> data_files([600, 600, 300, 300], [None, None, None, None])
    [[0], [1, 2], [3]]
    >>> data_files([10, 10, 10], [0, 0, None])
    [[0, 1], [2]]
    """
    files: list[list[int]] = []
    frames, current = 0, None  # frames in, and the earlier file of, the file being filled
    for position, (length, key) in enumerate(zip(lengths, earlier_file, strict=True)):
        if not files or key != current or (key is None and frames + length > FRAMES_PER_FILE):
            files.append([])
            frames, current = 0, key
        files[-1].append(position)
        frames += length
    return files


def _layout(frames: pd.DataFrame, split: str) -> tuple[str, tuple[int, int]]:
    sizes = {(int(h), int(w)) for h, w in zip(frames.height, frames.width, strict=True)}
    if len(sizes) > 1:
        raise ExportError(
            f"lerobot: {split} frames of sizes {sorted(sizes)}; a LeRobot feature has one shape"
        )
    cameras = frames.camera_model.unique()
    camera = camera_key(cameras[0]) if len(cameras) == 1 else "rgb"
    return f"observation.images.{camera}", (sizes.pop() if sizes else (0, 0))


def _fps(trajectories: list[pd.DataFrame]) -> int:
    gaps = np.concatenate(
        [np.diff(episode_seconds(t)) for t in trajectories if len(t) > 1] or [np.array([1.0])]
    )
    gaps = gaps[gaps > 0]
    return max(1, int(round(1.0 / float(np.median(gaps))))) if len(gaps) else 1


def _table(
    content: ReleaseContent,
    frames: pd.DataFrame,
    image_key: str,
    height: int,
    width: int,
    columns: dict[str, np.ndarray],
):
    import pyarrow as pa

    maps = np.stack([content.class_map(row) for row in frames.itertuples(index=False)]).astype(np.uint8)
    n = len(frames)
    inner = pa.ListArray.from_arrays(
        pa.array(np.arange(0, n * height * width + 1, width, dtype=np.int32)), pa.array(maps.ravel())
    )
    segmentation = pa.ListArray.from_arrays(
        pa.array(np.arange(0, n * height + 1, height, dtype=np.int32)), inner
    )
    images = pa.StructArray.from_arrays(
        [
            pa.array([content.image_bytes(r) for r in frames.itertuples(index=False)], pa.binary()),
            pa.array(
                [content.image_file(r).rsplit("/", 1)[1] for r in frames.itertuples(index=False)], pa.string()
            ),
        ],
        names=["bytes", "path"],
    )
    arrays = {image_key: images, SEGMENTATION: segmentation} | {k: pa.array(v) for k, v in columns.items()}
    features = {
        image_key: {"_type": "Image"},
        SEGMENTATION: {"shape": [height, width], "dtype": "uint8", "_type": "Array2D"},
        **{k: {"dtype": str(v.dtype), "_type": "Value"} for k, v in columns.items()},
    }
    table = pa.table(arrays)
    return table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})


def export(content: ReleaseContent, out: ReleaseFolder) -> list[str]:
    written: list[str] = []
    for split, trajectories in _split_trajectories(content).items():
        written += _export_split(content, out, split, trajectories)
    return written


def _export_split(
    content: ReleaseContent, out: ReleaseFolder, split: str, trajectories: list[pd.DataFrame]
) -> list[str]:
    import pandas as pd
    import pyarrow.parquet as pq

    earlier = _earlier_files(out, split)
    trajectories = arrival_order(trajectories, earlier)
    image_key, (height, width) = _layout(pd.concat(trajectories), split)
    root = split_root(split)
    tasks: dict[str, int] = {}
    for trajectory in trajectories:
        tasks.setdefault(f"scene {trajectory.scene_id.iloc[0]}", len(tasks))
    columns_of: list[dict[str, np.ndarray]] = []
    index = 0
    for episode_index, frames in enumerate(trajectories):
        n = len(frames)
        columns_of.append(
            {
                "timestamp": episode_seconds(frames).astype(np.float32),
                "frame_index": np.arange(n, dtype=np.int64),
                "episode_index": np.full(n, episode_index, np.int64),
                "index": np.arange(index, index + n, dtype=np.int64),
                "task_index": np.full(n, tasks[f"scene {frames.scene_id.iloc[0]}"], np.int64),
            }
        )
        index += n
    plan = data_files(
        [len(t) for t in trajectories], [earlier.get(str(t.episode_id.iloc[0])) for t in trajectories]
    )
    written: list[str] = []
    file_of: dict[int, int] = {}
    for file_index, positions in enumerate(plan):
        name = data_file(split, file_index)
        # what the file is made from: its episodes' frames, their numbers and tasks, the layout
        digest = hashlib.sha256(
            json.dumps(
                [image_key, height, width]
                + [
                    [
                        content.units_digest(trajectories[p].itertuples(index=False)),
                        p,
                        int(columns_of[p]["index"][0]),
                        int(columns_of[p]["task_index"][0]),
                    ]
                    for p in positions
                ]
            ).encode()
        ).hexdigest()
        unit = f"data:{split}/{file_index}"
        if not out.reuse(unit, NAME, digest):
            frames = pd.concat([trajectories[p] for p in positions])
            columns = {k: np.concatenate([columns_of[p][k] for p in positions]) for k in columns_of[0]}
            buffer = io.BytesIO()
            table = _table(content, frames, image_key, height, width, columns)
            pq.write_table(table, buffer, compression="zstd")
            out.record(unit, NAME, digest, out.write_bytes(name, buffer.getvalue()))
        written.append(name)
        file_of |= dict.fromkeys(positions, file_index)

    episode_rows, frame_rows = [], []
    for episode_index, frames in enumerate(trajectories):
        start = int(columns_of[episode_index]["index"][0])
        episode_rows.append(
            {
                "episode_index": episode_index,
                "tasks": [f"scene {frames.scene_id.iloc[0]}"],
                "length": len(frames),
                "data/chunk_index": 0,
                "data/file_index": file_of[episode_index],
                "dataset_from_index": start,
                "dataset_to_index": start + len(frames),
                "meta/episodes/chunk_index": 0,
                "meta/episodes/file_index": 0,
                "episode_id": str(frames.episode_id.iloc[0]),
                "scene_id": str(frames.scene_id.iloc[0]),
                "split": split,
            }
        )
        frame_rows += [
            {"index": start + i, "image_id": image_id, "split": split}
            for i, image_id in enumerate(frames.image_id)
        ]
    features = {
        image_key: {"dtype": "image", "shape": [height, width, 3], "names": ["height", "width", "channels"]},
        SEGMENTATION: {
            "dtype": "uint8",
            "shape": [height, width],
            "names": ["height", "width"],
            "info": {"class_names": content.taxonomy.names, "taxonomy": content.taxonomy.tag},
        },
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": None,
        "total_episodes": len(episode_rows),
        "total_frames": index,
        "total_tasks": len(tasks),
        "chunks_size": 1000,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 500,
        "fps": _fps(trajectories),
        "splits": {split: f"0:{len(episode_rows)}"},
        "data_path": DATA_PATH,
        "video_path": None,
        "features": features,
    }
    written.append(out.write_text(f"{root}/meta/info.json", json.dumps(info, indent=2)))
    written.append(out.write_parquet(f"{root}/{EPISODES_FILE}", pd.DataFrame(episode_rows)))
    tasks_frame = pd.DataFrame({"task_index": list(tasks.values())}, index=pd.Index(list(tasks), name="task"))
    buffer = io.BytesIO()
    tasks_frame.to_parquet(buffer)
    written.append(out.write_bytes(f"{root}/meta/tasks.parquet", buffer.getvalue()))
    written.append(out.write_parquet(f"{root}/{FRAMES_FILE}", pd.DataFrame(frame_rows)))
    stats = {}
    for key in ("timestamp", "index"):
        values = np.concatenate([columns[key] for columns in columns_of]).astype(np.float64)
        stats[key] = {
            "min": [values.min()],
            "max": [values.max()],
            "mean": [values.mean()],
            "std": [values.std()],
            "count": [len(values)],
        }
    written.append(out.write_text(f"{root}/meta/stats.json", json.dumps(stats, indent=2)))
    return written


def validate(content: ReleaseContent, out: ReleaseFolder) -> list[str]:
    """Read each split's dataset back with pyarrow: features declared, every episode of the split
    there with its frames in order at a contiguous index range, and each frame's segmentation
    equal to the class map of its image, its RGB bytes equal to the capture's (in every data file
    but those :meth:`ReleaseFolder.shared` leaves out; the metadata is always read whole)."""
    problems: list[str] = []
    expected = _split_trajectories(content)
    present = {name.split("/", 2)[1] for name in out.list(ROOT) if name.count("/") >= 2}
    for split in sorted(present - set(expected)):
        problems.append(f"{split_root(split)}: a dataset for split {split}, which holds no episode")
    for split, trajectories in expected.items():
        problems += _validate_split(content, out, split, trajectories)
    return problems


def _validate_split(
    content: ReleaseContent, out: ReleaseFolder, split: str, trajectories: list[pd.DataFrame]
) -> list[str]:
    import pandas as pd
    import pyarrow.parquet as pq

    root = split_root(split)
    try:
        info = json.loads(out.read_bytes(f"{root}/meta/info.json"))
        episodes_meta = pd.read_parquet(io.BytesIO(out.read_bytes(f"{root}/{EPISODES_FILE}")))
        frames_meta = pd.read_parquet(io.BytesIO(out.read_bytes(f"{root}/{FRAMES_FILE}")))
    except (FileNotFoundError, ValueError, OSError) as exc:
        return [f"{root}/meta: cannot be read ({exc})"]
    problems: list[str] = []
    features = info.get("features", {})
    image_keys = [k for k, v in features.items() if v.get("dtype") == "image"]
    if features.get(SEGMENTATION, {}).get("dtype") != "uint8" or len(image_keys) != 1:
        return [f"{root}/meta/info.json: features must declare {SEGMENTATION} as uint8 and one image key"]
    image_key = image_keys[0]
    frames_of = {str(t.episode_id.iloc[0]): t.image_id.tolist() for t in trajectories}
    image_at = dict(zip(frames_meta["index"], frames_meta.image_id, strict=True))
    total = sum(len(f) for f in frames_of.values())
    if sorted(episodes_meta.episode_id) != sorted(frames_of) or info.get("total_frames") != total:
        problems.append(f"{root}: episodes differ from the release's {split} episodes")
    if info.get("splits") != {split: f"0:{len(episodes_meta)}"}:
        problems.append(
            f"{root}/meta/info.json: splits {info.get('splits')} is not {split} 0:{len(episodes_meta)}"
        )
    for meta in episodes_meta.itertuples(index=False):
        held = [image_at.get(i) for i in range(meta.dataset_from_index, meta.dataset_to_index)]
        if held != frames_of.get(meta.episode_id):
            problems.append(
                f"{root}/{FRAMES_FILE}: episode {meta.episode_index} ({meta.episode_id}) does not hold "
                "its frames in frame order"
            )
    rows = {r.image_id: r for r in content.iter_rows(split)}
    for file_index in sorted(set(episodes_meta["data/file_index"])):
        name = data_file(split, int(file_index))
        if out.shared(name):  # the same episodes at the same numbers: read back by the earlier release
            continue
        table = pq.read_table(io.BytesIO(out.read_bytes(name)))
        column = table.column(SEGMENTATION).combine_chunks()
        images = table.column(image_key).combine_chunks().field("bytes")
        data = table.select(["index", "episode_index", "frame_index", "timestamp"]).to_pandas()
        for episode, group in data.groupby("episode_index"):
            meta = episodes_meta[episodes_meta.episode_index == episode].iloc[0]
            if group["index"].tolist() != list(range(meta.dataset_from_index, meta.dataset_to_index)):
                problems.append(f"{name}: episode {episode} rows are not its index range")
            if group.frame_index.tolist() != list(range(len(group))) or (np.diff(group.timestamp) < 0).any():
                problems.append(f"{name}: episode {episode} frames are out of order")
        for position, global_index in enumerate(data["index"]):
            image_id = image_at.get(int(global_index))
            row = rows.get(image_id) if image_id is not None else None
            if row is None:
                problems.append(f"{name}: row {position} (index {global_index}) has no released image")
                continue
            values = np.asarray(column[position].values.flatten(), dtype=np.uint8)
            if values.size != row.height * row.width or not np.array_equal(
                values.reshape(row.height, row.width), content.class_map(row)
            ):
                problems.append(f"{name}: row {position} segmentation is not the class map of {image_id}")
            if images[position].as_py() != content.image_bytes(row):
                problems.append(f"{name}: row {position} {image_key} is not the capture {image_id}")
    return problems

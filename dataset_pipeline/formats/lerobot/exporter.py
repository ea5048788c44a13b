"""LeRobot dataset (codebase v3.0 layout) with a frame-aligned ``observation.segmentation`` feature.

Under ``lerobot/``::

    meta/info.json                                   codebase_version v3.0, fps, features, splits
    meta/tasks.parquet                               task text (index) -> task_index
    meta/episodes/chunk-000/file-000.parquet         per episode: length, data file, frame range
    meta/stats.json                                  numeric features' min / max / mean / std
    meta/frames.parquet                              ours: global index -> image_id, split
    data/chunk-000/file-<k>.parquet                  one row per frame

Per frame: ``observation.images.<camera>`` (dtype ``image``: the capture's own encoded bytes,
as Hugging Face ``datasets`` stores an Image: ``{bytes, path}``), ``observation.segmentation``
(dtype ``uint8``, shape [H, W]: class ids as a plain array, never video - lossy codecs
blend neighbouring ids - and never an ``image`` feature, which LeRobot would scale to
[0, 1]), ``timestamp`` (seconds since the episode's first frame), ``frame_index``,
``episode_index``, ``index``, ``task_index``. Captures carry no language instruction, so
the task text is ``"scene <scene_id>"``. The camera key is the camera_model when every frame
shares one, else ``rgb``. Frames without an episode_id are in no trajectory.
"""

from __future__ import annotations

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
FRAMES_PER_FILE = 1000
SEGMENTATION = "observation.segmentation"


def _episode_frames(content: ReleaseContent) -> tuple[list[pd.DataFrame], str, tuple[int, int]]:
    import pandas as pd

    trajectories = episodes(content)
    frames = pd.concat(trajectories) if trajectories else content.images.iloc[0:0]
    sizes = {(int(h), int(w)) for h, w in zip(frames.height, frames.width, strict=True)}
    if len(sizes) > 1:
        raise ExportError(f"lerobot: frames of sizes {sorted(sizes)}; a LeRobot feature has one shape")
    cameras = frames.camera_model.unique()
    camera = camera_key(cameras[0]) if len(cameras) == 1 else "rgb"
    return trajectories, f"observation.images.{camera}", (sizes.pop() if sizes else (0, 0))


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
    import pandas as pd
    import pyarrow.parquet as pq

    trajectories, image_key, (height, width) = _episode_frames(content)
    tasks = sorted({f"scene {t.scene_id.iloc[0]}" for t in trajectories})
    task_index = {task: i for i, task in enumerate(tasks)}
    written: list[str] = []
    episode_rows: list[dict] = []
    frame_rows: list[pd.DataFrame] = []
    all_columns: list[dict[str, np.ndarray]] = []
    index, file_index = 0, 0
    pending: list[tuple[pd.DataFrame, dict[str, np.ndarray]]] = []

    def flush() -> None:
        nonlocal file_index, pending
        if not pending:
            return
        frames = pd.concat([p[0] for p in pending])
        columns = {k: np.concatenate([p[1][k] for p in pending]) for k in pending[0][1]}
        buffer = io.BytesIO()
        pq.write_table(_table(content, frames, image_key, height, width, columns), buffer, compression="zstd")
        written.append(
            out.write_bytes(
                f"{ROOT}/" + DATA_PATH.format(chunk_index=0, file_index=file_index), buffer.getvalue()
            )
        )
        file_index, pending = file_index + 1, []

    for episode_index, frames in enumerate(trajectories):
        if pending and sum(len(p[0]) for p in pending) + len(frames) > FRAMES_PER_FILE:
            flush()
        n = len(frames)
        task = f"scene {frames.scene_id.iloc[0]}"
        columns: dict[str, np.ndarray] = {
            "timestamp": episode_seconds(frames).astype(np.float32),
            "frame_index": np.arange(n, dtype=np.int64),
            "episode_index": np.full(n, episode_index, np.int64),
            "index": np.arange(index, index + n, dtype=np.int64),
            "task_index": np.full(n, task_index[task], np.int64),
        }
        pending.append((frames, columns))
        all_columns.append(columns)
        episode_rows.append(
            {
                "episode_index": episode_index,
                "tasks": [task],
                "length": n,
                "data/chunk_index": 0,
                "data/file_index": file_index,
                "dataset_from_index": index,
                "dataset_to_index": index + n,
                "meta/episodes/chunk_index": 0,
                "meta/episodes/file_index": 0,
                "episode_id": str(frames.episode_id.iloc[0]),
                "scene_id": str(frames.scene_id.iloc[0]),
                "split": str(frames.split.iloc[0]),
            }
        )
        frame_rows += [
            {"index": index + i, "image_id": r.image_id, "split": r.split}
            for i, r in enumerate(frames.itertuples(index=False))
        ]
        index += n
    flush()

    splits: dict[str, str] = {}
    for split in content.splits:
        numbers = [e["episode_index"] for e in episode_rows if e["split"] == split]
        if numbers:
            splits[split] = f"{min(numbers)}:{max(numbers) + 1}"
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
        "splits": splits,
        "data_path": DATA_PATH,
        "video_path": None,
        "features": features,
    }
    written.append(out.write_text(f"{ROOT}/meta/info.json", json.dumps(info, indent=2)))
    written.append(out.write_parquet(f"{ROOT}/{EPISODES_FILE}", pd.DataFrame(episode_rows)))
    tasks_frame = pd.DataFrame({"task_index": list(range(len(tasks)))}, index=pd.Index(tasks, name="task"))
    buffer = io.BytesIO()
    tasks_frame.to_parquet(buffer)
    written.append(out.write_bytes(f"{ROOT}/meta/tasks.parquet", buffer.getvalue()))
    written.append(out.write_parquet(f"{ROOT}/meta/frames.parquet", pd.DataFrame(frame_rows)))
    stats = {}
    for key in ("timestamp", "index") if all_columns else ():
        values = np.concatenate([columns[key] for columns in all_columns]).astype(np.float64)
        if len(values):
            stats[key] = {
                "min": [values.min()],
                "max": [values.max()],
                "mean": [values.mean()],
                "std": [values.std()],
                "count": [len(values)],
            }
    written.append(out.write_text(f"{ROOT}/meta/stats.json", json.dumps(stats, indent=2)))
    return written


def validate(content: ReleaseContent, out: ReleaseFolder) -> list[str]:
    """Read the layout back with pyarrow: features declared, episodes contiguous, and each frame's
    segmentation equal to the class map of its image, its RGB bytes equal to the capture's."""
    import pandas as pd
    import pyarrow.parquet as pq

    problems: list[str] = []
    try:
        info = json.loads(out.read_bytes(f"{ROOT}/meta/info.json"))
        episodes_meta = pd.read_parquet(io.BytesIO(out.read_bytes(f"{ROOT}/{EPISODES_FILE}")))
        frames_meta = pd.read_parquet(io.BytesIO(out.read_bytes(f"{ROOT}/meta/frames.parquet")))
    except (FileNotFoundError, ValueError, OSError) as exc:
        return [f"{ROOT}/meta: cannot be read ({exc})"]
    features = info.get("features", {})
    image_keys = [k for k, v in features.items() if v.get("dtype") == "image"]
    if features.get(SEGMENTATION, {}).get("dtype") != "uint8" or len(image_keys) != 1:
        problems.append(
            f"{ROOT}/meta/info.json: features must declare {SEGMENTATION} as uint8 and one image key"
        )
        return problems
    image_key = image_keys[0]
    rows = {r.image_id: r for r in content.iter_rows()}
    expected = [f.image_id for t in episodes(content) for f in t.itertuples(index=False)]
    if frames_meta.image_id.tolist() != expected or info.get("total_frames") != len(expected):
        problems.append(f"{ROOT}: frames differ from the release's episode frames")
    image_of = dict(zip(frames_meta["index"], frames_meta.image_id, strict=True))
    for file_index in sorted(set(episodes_meta["data/file_index"])):
        name = f"{ROOT}/" + DATA_PATH.format(chunk_index=0, file_index=int(file_index))
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
            image_id = image_of.get(int(global_index))
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

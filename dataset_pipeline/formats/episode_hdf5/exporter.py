"""Episode HDF5 (the ALOHA / ACT layout that DROID-style pipelines read): one file per trajectory.

``episodes/episode_<n>.hdf5`` for each episode with released frames, ``n`` counting from 0
in release order (split, then episode_id); ``episodes/index.csv`` maps ``n`` to
episode_id, scene_id, split and frame count. In each file::

    /observations/images/<camera>        (T, H, W, 3) uint8   RGB frames (camera = camera_model as a key)
    /observations/images/segmentation    (T, H, W) uint8      class ids, frame-aligned with the RGB
    /timestamp                           (T,) float64         seconds since the episode's first frame
    /frame_index                         (T,) int64
    /image_ids                           (T,) UTF-8 strings

Attributes: ``sim`` = False (ALOHA's flag), episode_id, scene_id, split, camera,
class_names, taxonomy. The captures carry no joint states or actions, so ``/action`` and
``/observations/qpos`` are absent: a pipeline that has them joins on ``image_ids`` and
``timestamp``. Frames are chunked one per chunk, gzip level 1.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np

from dataset_pipeline.formats.exporting import ReleaseFolder
from dataset_pipeline.formats.release_content import ExportError, ReleaseContent
from dataset_pipeline.formats.trajectories import camera_key, episode_seconds, episodes

if TYPE_CHECKING:
    import pandas as pd

NAME = "episode_hdf5"
INDEX_FILE = "episodes/index.csv"


def episode_file(number: int) -> str:
    return f"episodes/episode_{number}.hdf5"


def write_episode(content: ReleaseContent, frames: pd.DataFrame, path: str) -> str:
    import h5py

    cameras = frames.camera_model.unique()
    sizes = {(int(h), int(w)) for h, w in zip(frames.height, frames.width, strict=True)}
    episode_id = str(frames.episode_id.iloc[0])
    if len(cameras) > 1 or len(sizes) > 1:
        raise ExportError(
            f"episode {episode_id}: frames from cameras {list(cameras)} / sizes {sorted(sizes)}; "
            "one trajectory file holds one camera stream of one size"
        )
    camera = camera_key(cameras[0])
    (height, width), count = sizes.pop(), len(frames)
    with h5py.File(path, "w") as handle:
        images = handle.create_group("observations/images")
        rgb = images.create_dataset(
            camera,
            (count, height, width, 3),
            np.uint8,
            chunks=(1, height, width, 3),
            compression="gzip",
            compression_opts=1,
        )
        seg = images.create_dataset(
            "segmentation",
            (count, height, width),
            np.uint8,
            chunks=(1, height, width),
            compression="gzip",
            compression_opts=1,
        )
        for index, row in enumerate(frames.itertuples(index=False)):
            rgb[index] = content.rgb(row)
            seg[index] = content.class_map(row)
        handle.create_dataset("timestamp", data=episode_seconds(frames))
        handle.create_dataset("frame_index", data=frames.frame_index.to_numpy(np.int64))
        handle.create_dataset("image_ids", data=frames.image_id.tolist(), dtype=h5py.string_dtype("utf-8"))
        handle.attrs.update(
            {
                "sim": False,
                "episode_id": episode_id,
                "scene_id": str(frames.scene_id.iloc[0]),
                "split": str(frames.split.iloc[0]),
                "camera": camera,
                "class_names": content.taxonomy.names,
                "taxonomy": content.taxonomy.tag,
            }
        )
    return camera


def export(content: ReleaseContent, out: ReleaseFolder) -> list[str]:
    import pandas as pd

    written, index = [], []
    for number, frames in enumerate(episodes(content)):
        # an episode whose frames are unchanged is the earlier release's file, under its new number
        unit, digest = (
            f"episode:{frames.episode_id.iloc[0]}",
            content.units_digest(frames.itertuples(index=False)),
        )
        if not out.reuse(unit, NAME, digest, [episode_file(number)]):
            with out.new_local_file(episode_file(number)) as path:
                write_episode(content, frames, path)
            out.record(unit, NAME, digest, episode_file(number))
        camera = camera_key(frames.camera_model.iloc[0])
        written.append(episode_file(number))
        index.append(
            {
                "episode": number,
                "file": episode_file(number),
                "episode_id": frames.episode_id.iloc[0],
                "scene_id": frames.scene_id.iloc[0],
                "split": frames.split.iloc[0],
                "camera": camera,
                "frames": len(frames),
            }
        )
    written.append(
        out.write_text(
            INDEX_FILE,
            pd.DataFrame(
                index, columns=["episode", "file", "episode_id", "scene_id", "split", "camera", "frames"]
            ).to_csv(index=False),
        )
    )
    return written


def validate(content: ReleaseContent, out: ReleaseFolder) -> list[str]:
    """Each trajectory reads back frame-aligned: RGB frame i and segmentation frame i are the
    capture and class map of image_ids[i], timestamps increase."""
    import h5py
    import pandas as pd

    problems: list[str] = []
    try:
        index = pd.read_csv(io.BytesIO(out.read_bytes(INDEX_FILE)))
    except (FileNotFoundError, ValueError) as exc:
        return [f"{INDEX_FILE}: cannot be read ({exc})"]
    expected = episodes(content)
    if len(index) != len(expected):
        problems.append(f"{INDEX_FILE}: {len(index)} episodes, the release has {len(expected)}")
    rows = {r.image_id: r for r in content.iter_rows()}
    for entry, frames in zip(index.itertuples(), expected, strict=False):
        name = entry.file
        if out.shared(name):
            continue
        try:
            with out.local_copy(name) as path, h5py.File(path, "r") as handle:
                ids = [v.decode() for v in handle["image_ids"][:]]
                if ids != frames.image_id.tolist():
                    problems.append(
                        f"{name}: image_ids differ from episode {frames.episode_id.iloc[0]}'s frames"
                    )
                    continue
                rgb = handle[f"observations/images/{entry.camera}"]
                seg = handle["observations/images/segmentation"]
                if rgb.shape[0] != len(ids) or seg.shape[0] != len(ids) or seg.dtype != np.uint8:
                    problems.append(
                        f"{name}: {rgb.shape[0]} RGB / {seg.shape[0]} segmentation frames for {len(ids)} ids"
                    )
                    continue
                if np.any(np.diff(handle["timestamp"][:]) < 0):
                    problems.append(f"{name}: timestamps go backwards")
                for i, image_id in enumerate(ids):
                    if not np.array_equal(seg[i], content.class_map(rows[image_id])):
                        problems.append(f"{name}: segmentation[{i}] is not the class map of {image_id}")
                    if not np.array_equal(rgb[i], content.rgb(rows[image_id])):
                        problems.append(f"{name}: {entry.camera}[{i}] is not the capture {image_id}")
        except (OSError, KeyError) as exc:
            problems.append(f"{name}: cannot be read ({exc})")
    return problems

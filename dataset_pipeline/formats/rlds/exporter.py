"""The release as an RLDS dataset (TFDS directory), for captures from any source.

Under ``rlds/<name>/1.0.0/`` (``name`` = ``dataset_pipeline_release``), written by
tensorflow-datasets in its own environment (``robot_workers/tfds_worker.py export``): one episode per
trajectory (``episode_id`` / ``frame_index``; frames without an episode are in none), splits
as the release's, episodes in split-name order then episode_id. Per step::

    observation/image                 the release's image bytes as stored (JPEG or PNG)
    observation/segmentation_mask     uint8 [H, W] class ids (zlib), never lossy
    observation/segmentation_source   ClassLabel none / human / propagated / model
    timestamp (s since the episode's first frame), frame_index, image_id, is_first/is_last/is_terminal

``episode_metadata``: episode_id, scene_id, split. Read back with ``tfds.builder_from_directory``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from dataset_pipeline.formats.exporting import ReleaseFolder
from dataset_pipeline.formats.release_content import ExportError, ReleaseContent
from dataset_pipeline.formats.robot_dataset import mask_file
from dataset_pipeline.formats.trajectories import episode_seconds, episodes

NAME = "rlds"
ROOT = "rlds"
DATASET = "dataset_pipeline_release"
VERSION = "1.0.0"


def _trajectories(content: ReleaseContent):
    found = sorted(episodes(content), key=lambda t: (str(t.split.iloc[0]), str(t.episode_id.iloc[0])))
    sizes = {(int(h), int(w)) for t in found for h, w in zip(t.height, t.width, strict=True)}
    if len(sizes) > 1:
        raise ExportError(f"rlds: frames of sizes {sorted(sizes)}; an RLDS image feature here has one shape")
    return found, (sizes.pop() if sizes else (0, 0))


def _episode_files(content: ReleaseContent, folder: Path) -> tuple[list[dict], tuple[int, int]]:
    """Frames and class maps of each episode, as the worker reads them."""
    from dataset_pipeline.formats.write_back.core import mask_source

    trajectories, shape = _trajectories(content)
    annotations = content.annotations
    flags = (
        {
            image_id: max(mask_source(a, s) for a, s in zip(rows.assistance, rows.review_status, strict=True))
            for image_id, rows in annotations.groupby("image_id")
        }
        if len(annotations)
        else {}
    )
    metas = []
    for number, frames in enumerate(trajectories):
        rows = list(frames.itertuples(index=False))
        masks = np.stack([content.class_map(row) for row in rows]).astype(np.uint8)
        sources = np.array([flags.get(row.image_id, 1) for row in rows], np.uint8)  # reviewed, maybe empty
        np.savez(folder / mask_file(number, "image"), masks=masks, sources=sources)
        seconds = episode_seconds(frames)
        listed = []
        for position, row in enumerate(rows):
            name = f"{number}_{position}{Path(row.uri).suffix.lower() or '.png'}"
            (folder / name).write_bytes(content.image_bytes(row))
            listed.append(
                {
                    "image": name,
                    "timestamp": float(seconds[position]),
                    "frame_index": int(row.frame_index),
                    "image_id": str(row.image_id),
                }
            )
        metas.append(
            {
                "episode_id": str(frames.episode_id.iloc[0]),
                "scene_id": str(frames.scene_id.iloc[0]),
                "split": str(frames.split.iloc[0]),
                "masks": mask_file(number, "image"),
                "frames": listed,
            }
        )
    return metas, shape


def export(content: ReleaseContent, out: ReleaseFolder) -> list[str]:
    from dataset_pipeline.formats.environments import run_worker

    with tempfile.TemporaryDirectory(prefix="dp-rlds-") as folder:
        work, target = Path(folder) / "episodes", Path(folder) / "out"
        work.mkdir()
        metas, shape = _episode_files(content, work)
        if not metas:
            return []
        run_worker(
            "tfds",
            "export",
            {
                "episodes_dir": str(work),
                "episodes": metas,
                "shape": list(shape),
                "out": str(target),
                "name": DATASET,
                "version": VERSION,
                "description": f"{content.info.get('name', 'dataset_pipeline release')} {content.info.get('version', '')}: "
                f"classes {json.dumps(content.taxonomy.names)}",
            },
        )
        written = []
        for path in sorted(p for p in target.rglob("*") if p.is_file()):
            written.append(
                out.write_bytes(f"{ROOT}/{path.relative_to(target).as_posix()}", path.read_bytes())
            )
        return written


def validate(content: ReleaseContent, out: ReleaseFolder) -> list[str]:
    from dataset_pipeline.formats.environments import run_worker

    relative = f"{ROOT}/{DATASET}/{VERSION}"
    with tempfile.TemporaryDirectory(prefix="dp-rlds-") as folder:
        work = Path(folder) / "episodes"
        work.mkdir()
        metas, shape = _episode_files(content, work)
        if not metas:
            return [] if not out.list(ROOT) else [f"{ROOT}/: written, but the release has no episodes"]
        written = Path(folder) / "written"
        for name in out.list(relative):
            target = written / name[len(relative) + 1 :]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(out.read_bytes(name))
        answer = run_worker(
            "tfds",
            "check",
            {
                "written": str(written),
                "shapes": {"image": list(shape)},
                "masks": str(work),
                "mask_files": {f"{n}:image": meta["masks"] for n, meta in enumerate(metas)},
                "episodes": len(metas),
            },
        )
    return [f"{relative}: {p}" for p in answer["problems"]]

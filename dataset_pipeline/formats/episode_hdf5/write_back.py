"""Masks written back into a copy of an episode HDF5 folder (ALOHA / ACT layout), with h5py.

Each episode file is copied byte for byte, then gains::

    /observations/images/segmentation          (T, H, W) uint8   class ids per frame (gzip 1, a frame per chunk)
    /observations/images/segmentation_source   (T,) uint8        0 none, 1 human, 2 propagated, 3 model

(``segmentation_<camera>`` and ``segmentation_<camera>_source`` per camera when several were
labelled; the camera is the image dataset's name). Attributes on the class maps:
``camera`` (the image dataset they align with), ``class_names``; on the flags: ``codes``.
Every original dataset and attribute is untouched.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from dataset_pipeline.formats.episode_hdf5.source import episode_files
from dataset_pipeline.formats.robot_dataset import MASK_SOURCES

GROUP = "observations/images"


def dataset_names(cameras: list[str]) -> dict[str, tuple[str, str]]:
    """camera -> (class-map dataset, flag dataset) paths.

    >>> dataset_names(["observations/images/cam_high"])
    {'observations/images/cam_high': ('observations/images/segmentation', 'observations/images/segmentation_source')}
    """
    if len(cameras) == 1:
        return {cameras[0]: (f"{GROUP}/segmentation", f"{GROUP}/segmentation_source")}
    names = {}
    for camera in cameras:
        leaf = camera.rsplit("/", 1)[-1]
        names[camera] = (f"{GROUP}/segmentation_{leaf}", f"{GROUP}/segmentation_{leaf}_source")
    return names


def _masks(
    folder: Path, files: dict[str, str], episode: int, camera: str, length: int, shape: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    name = files.get(f"{episode}:{camera}")
    if name:
        with np.load(folder / name) as data:
            return data["masks"], data["sources"]
    return np.zeros((length, *shape), np.uint8), np.zeros(length, np.uint8)


def _length(handle, camera: str) -> int:
    return int(handle[camera].shape[0])


def write_back(
    root: Path,
    masks_dir: Path,
    files: dict[str, str],
    shapes: dict[str, list[int]],
    out: Path,
    *,
    class_names: list[str],
) -> dict:
    import h5py

    out.mkdir(parents=True, exist_ok=True)
    names = dataset_names(list(shapes))
    frames = 0
    episodes = episode_files(root)
    for episode, path in episodes:
        target = out / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        with h5py.File(target, "r+") as handle:
            for camera, (mask_name, source_name) in names.items():
                length = _length(handle, camera)
                height, width = shapes[camera]
                masks, sources = _masks(masks_dir, files, episode, camera, length, shapes[camera])
                data = handle.create_dataset(
                    mask_name,
                    data=masks.astype(np.uint8),
                    chunks=(1, height, width),
                    compression="gzip",
                    compression_opts=1,
                )
                data.attrs["camera"] = camera
                data.attrs["class_names"] = [str(n) for n in class_names]
                flags = handle.create_dataset(source_name, data=sources.astype(np.uint8))
                flags.attrs["codes"] = list(MASK_SOURCES)
                frames += length if camera == next(iter(names)) else 0
    return {
        "episodes": len(episodes),
        "frames": frames,
        "files": [str(p.relative_to(root)) for _, p in episodes],
    }


def _dataset_names(handle) -> list[str]:
    import h5py

    names: list[str] = []
    handle.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
    return names


def check(
    root: Path, masks_dir: Path, files: dict[str, str], shapes: dict[str, list[int]], out: Path
) -> list[str]:
    """h5py reads every written file: the new datasets' shapes, dtypes and values, and every
    original dataset equal to the source's."""
    import h5py

    problems: list[str] = []
    names = dataset_names(list(shapes))
    for episode, path in episode_files(root):
        relative = path.relative_to(root)
        target = out / relative
        if not target.is_file():
            problems.append(f"{relative}: not written")
            continue
        with h5py.File(path, "r") as original, h5py.File(target, "r") as written:
            for camera, (mask_name, source_name) in names.items():
                length = _length(original, camera)
                masks, sources = _masks(masks_dir, files, episode, camera, length, shapes[camera])
                for name, expected in ((mask_name, masks), (source_name, sources)):
                    if name not in written:
                        problems.append(f"{relative}: /{name} is missing")
                        continue
                    got = written[name]
                    if got.shape != expected.shape or got.dtype != np.uint8:
                        problems.append(
                            f"{relative}: /{name} is {got.dtype}{got.shape}, expected uint8{expected.shape}"
                        )
                    elif not np.array_equal(got[()], expected):
                        problems.append(f"{relative}: /{name} differs from the class maps")

            for name in _dataset_names(original):
                if name not in written or not np.array_equal(written[name][()], original[name][()]):
                    problems.append(f"{relative}: source dataset /{name} changed")
        if len(problems) > 20:
            break
    return problems[:20]

"""Release exporters: one module per format, each behind the same two functions.

Every format module has::

    NAME: str                                   # the name used in configuration
    def export(content: ReleaseContent, out: ReleaseFolder) -> list[str]   # keys written
    def validate(content: ReleaseContent, out: ReleaseFolder) -> list[str] # problems found

A format with one file per image also has ``export_shared(content, out) -> list[str]`` (its
files that are not per image) and ``export_image(content, out, row) -> str``; ``export`` is
then those two. The release calls them image by image, all such formats in one pass over
the images, so each image's masks are decoded once (:meth:`ReleaseContent.decoded`).

``validate`` reads back what ``export`` wrote, with the format's own reader where one is
installed (pycocotools for COCO, h5py for HDF5, PIL for PNG, pyarrow for LeRobot's
Parquet) and compares it with the corpus, so a problem names the file, the record and
the field. The shared model is :class:`ReleaseContent`: the released images (captures rows
plus their split) and the reference instances of each, under one taxonomy.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dataset_pipeline.annotation_corpus import paint_class_map
from dataset_pipeline.captures import decode_image
from dataset_pipeline.masks import decode_mask, rle_boxes
from dataset_pipeline.store import DatasetStore, join_key
from dataset_pipeline.taxonomy import Taxonomy


class ExportError(ValueError):
    """The content cannot be written in a format (the message names the image and the field)."""


def file_stem(image_id: str) -> str:
    """A flat, filesystem-safe file name stem for an image id (``/`` becomes ``__``).

    >>> file_stem("2026-11-24-kitchen/images/frame_0001")
    '2026-11-24-kitchen__images__frame_0001'
    """
    return image_id.replace("/", "__")


@dataclass(frozen=True)
class DecodedInstances:
    """One image's instances decoded: masks (column-major bool, full frame), their tight boxes
    ``(x0, y0, x1, y1)``, class ids and z_order, in the instances' row order."""

    image_id: str
    masks: list[np.ndarray]
    boxes: np.ndarray
    class_ids: np.ndarray
    z_orders: np.ndarray


@dataclass
class ReleaseContent:
    """What a release holds: images with their split, and the instances that label them.

    ``images`` is the captures table plus a ``split`` column; ``annotations`` holds one
    annotator's instances per image (the reference labels), with the corpus columns.
    """

    store: DatasetStore
    taxonomy: Taxonomy
    images: pd.DataFrame
    annotations: pd.DataFrame
    info: dict = field(default_factory=dict)
    _ranges: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False)
    _last_decoded: threading.local = field(default_factory=threading.local, repr=False)
    _instance_columns: tuple | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.images = self.images.sort_values(["split", "image_id"], kind="stable").reset_index(drop=True)
        # Instances sorted by image: one image's rows are a contiguous slice (no frame per image kept).
        self.annotations = self.annotations.sort_values("image_id", kind="stable").reset_index(drop=True)
        ids = self.annotations.image_id.to_numpy()
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, int)
        ends = np.r_[starts[1:], len(ids)]
        self._ranges = {ids[s]: (int(s), int(e)) for s, e in zip(starts, ends, strict=True)}
        stems = self.images.image_id.map(file_stem)
        duplicated = stems[stems.duplicated()]
        if len(duplicated):
            raise ExportError(f"image ids {sorted(set(duplicated))} map to the same release file name")

    @property
    def splits(self) -> list[str]:
        order = {"train": 0, "val": 1, "test": 2}
        return sorted(self.images.split.unique(), key=lambda s: (order.get(s, 9), s))

    def split_images(self, split: str) -> pd.DataFrame:
        return self.images[self.images.split == split]

    def instances(self, image_id: str) -> pd.DataFrame:
        """The instances of one image (empty frame when it has none), in z_order then row order."""
        start, end = self._ranges.get(image_id, (0, 0))
        return self.annotations.iloc[start:end]

    def decoded(self, row) -> DecodedInstances:
        """The instances of a captures row, decoded; the last image's are kept (per thread), so
        formats written image by image in one pass decode each image once."""
        last = getattr(self._last_decoded, "value", None)
        if last is None or last.image_id != row.image_id:
            if self._instance_columns is None:  # every instance's box at once, in RLE space
                a = self.annotations  # (one assignment: threads see all four columns or none)
                boxes = rle_boxes(a.height, a.width, a.rle)
                self._instance_columns = (
                    a.rle.to_numpy(),
                    boxes,
                    a.class_id.to_numpy(),
                    a.z_order.to_numpy(),
                )
            start, end = self._ranges.get(row.image_id, (0, 0))
            rles, boxes, class_ids, z_orders = (column[start:end] for column in self._instance_columns)
            height, width = int(row.height), int(row.width)
            last = DecodedInstances(
                row.image_id, [decode_mask(rle, height, width) for rle in rles], boxes, class_ids, z_orders
            )
            self._last_decoded.value = last
        return last

    def class_map(self, row) -> np.ndarray:
        """The (H, W) uint8 semantic map of a captures row (foreground z_order wins)."""
        d = self.decoded(row)
        return paint_class_map(d.masks, d.boxes, d.class_ids, d.z_orders, row.height, row.width)

    def image_bytes(self, row) -> bytes:
        return self.store.read_bytes(row.uri)

    def rgb(self, row) -> np.ndarray:
        return decode_image(self.image_bytes(row), row.uri).rgb

    def image_file(self, row) -> str:
        """``<split>/<stem><ext>``: where the image sits under the release's ``images/``."""
        ext = posixpath.splitext(row.uri)[1].lower() or ".png"
        return f"{row.split}/{file_stem(row.image_id)}{ext}"

    def iter_rows(self, split: str | None = None) -> Iterator:
        frame = self.images if split is None else self.split_images(split)
        return frame.itertuples(index=False)


@dataclass
class ReleaseFolder:
    """The release's folder in the store: ``releases/<version>/``; keys are relative to it."""

    store: DatasetStore
    prefix: str

    def key(self, relative: str) -> str:
        return join_key(self.prefix, relative)

    def write_bytes(self, relative: str, data: bytes) -> str:
        """Atomic, without a per-file fsync: the release's manifests are written after ``store.sync()``."""
        self.store.write_bytes(self.key(relative), data, durable=False)
        return relative

    def write_text(self, relative: str, text: str) -> str:
        return self.write_bytes(relative, text.encode("utf-8"))

    def write_parquet(self, relative: str, frame: pd.DataFrame) -> str:
        self.store.write_parquet(self.key(relative), frame, durable=False)
        return relative

    def put_file(self, relative: str, local_path: str) -> str:
        self.store.put_file(self.key(relative), local_path)
        return relative

    def read_bytes(self, relative: str) -> bytes:
        return self.store.read_bytes(self.key(relative))

    def exists(self, relative: str) -> bool:
        return self.store.exists(self.key(relative))

    def list(self, relative: str = "") -> list[str]:
        base = self.key(relative) if relative else self.prefix
        return [k[len(self.prefix) + 1 :] for k in self.store.list(base, recursive=True)]

    @contextlib.contextmanager
    def local_copy(self, relative: str) -> Iterator[str]:
        """A local path to read the file with a library that wants one (h5py, pycocotools):
        the file itself on a local store, else a temporary download removed afterwards."""
        if self.store.is_local:
            yield self.store.path(self.key(relative))
            return
        import tempfile

        handle = tempfile.NamedTemporaryFile(suffix=posixpath.splitext(relative)[1], delete=False)
        try:
            with handle:
                handle.write(self.read_bytes(relative))
            yield handle.name
        finally:
            os.unlink(handle.name)


def episodes(content: ReleaseContent) -> list[pd.DataFrame]:
    """The released frames of each episode (frames without an episode_id are in no trajectory),
    in frame order; episodes ordered by split, then episode_id."""
    frames = content.images[content.images.episode_id.notna()]
    groups = [
        group.sort_values(["frame_index", "capture_ts"], kind="stable")
        for _, group in frames.groupby("episode_id", sort=True)
    ]
    order = {"train": 0, "val": 1, "test": 2}
    return sorted(groups, key=lambda g: (order.get(g.split.iloc[0], 9), str(g.episode_id.iloc[0])))


def episode_seconds(frames: pd.DataFrame) -> np.ndarray:
    """Seconds since the episode's first frame, per frame (float64)."""
    stamps = pd.to_datetime(frames.capture_ts, utc=True)
    return (stamps - stamps.iloc[0]).dt.total_seconds().to_numpy(np.float64)


def camera_key(camera_model: object) -> str:
    """A camera name usable as a dataset / feature key.

    >>> camera_key("RealSense D435i")
    'realsense_d435i'
    """
    text = "".join(ch if ch.isalnum() else "_" for ch in str(camera_model or "camera").lower())
    return "_".join(part for part in text.split("_") if part) or "camera"


def export_formats() -> dict[str, object]:
    """Format name -> module, in the order they are written."""
    from dataset_pipeline.exporters import coco, episode_hdf5, hdf5, lerobot, semantic_png, yolo_seg

    return {m.NAME: m for m in (coco, yolo_seg, semantic_png, hdf5, lerobot, episode_hdf5)}

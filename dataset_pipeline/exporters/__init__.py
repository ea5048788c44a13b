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
plus their split) and the reference instances of each, under one taxonomy, held as Arrow
tables and read one image (or one split) at a time; COCO and the per-image formats need
nothing else, so a release written from Parquet tables does not load pandas. Formats that
group frames into trajectories, and the validators, use its pandas views.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import posixpath
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from dataset_pipeline.masks import decode_mask, paint_class_map, rle_boxes
from dataset_pipeline.store import DatasetStore, join_key
from dataset_pipeline.taxonomy import Taxonomy

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


class ExportError(ValueError):
    """The content cannot be written in a format (the message names the image and the field)."""


def file_stem(image_id: str) -> str:
    """A flat, filesystem-safe file name stem for an image id (``/`` becomes ``__``).

    >>> file_stem("2026-11-24-kitchen/images/frame_0001")
    '2026-11-24-kitchen__images__frame_0001'
    """
    return image_id.replace("/", "__")


class ImageRow(NamedTuple):
    """What the per-image exporters read of a released image."""

    image_id: str
    split: str
    uri: str
    width: int
    height: int
    capture_ts: datetime.datetime | None


@dataclass(frozen=True)
class DecodedInstances:
    """One image's instances decoded: masks (column-major bool, full frame), their tight boxes
    ``(x0, y0, x1, y1)``, class ids and z_order, in the instances' row order."""

    image_id: str
    masks: list[np.ndarray]
    boxes: np.ndarray
    class_ids: np.ndarray
    z_orders: np.ndarray


def as_arrow(table: pa.Table | pd.DataFrame) -> pa.Table:
    """A pyarrow Table of a table given as one or as a pandas DataFrame (its index dropped)."""
    import pyarrow as pa

    return table if isinstance(table, pa.Table) else pa.Table.from_pandas(table, preserve_index=False)


def column_values(table: pa.Table, name: str) -> list:
    """A column as Python values; timestamps as UTC datetimes.

    Read without pandas: pyarrow's ``to_numpy`` and its timestamp ``to_pylist`` import pandas
    (40 MiB), which the per-image exporters do not otherwise need.
    """
    import pyarrow as pa

    column = table.column(name)
    if not pa.types.is_timestamp(column.type):
        return column.to_pylist()
    per_second = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[column.type.unit]
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    return [
        None if ticks is None else epoch + datetime.timedelta(microseconds=ticks * 10**6 // per_second)
        for chunk in column.chunks
        for ticks in chunk.view(pa.int64()).to_pylist()
    ]


class ReleaseContent:
    """What a release holds: images with their split, and the instances that label them.

    ``images`` is the captures table plus a ``split`` column; ``annotations`` holds one
    annotator's instances per image (the reference labels), with the corpus columns. Both are
    given as pyarrow Tables or pandas DataFrames and kept as Arrow tables (images sorted by
    split then image_id, instances by image_id): the per-image exporters read one image's
    slice at a time (:meth:`iter_rows`, :meth:`decoded`, :meth:`instance_columns`), so the
    export holds the compact Arrow columns, not a Python object per value, and needs no
    pandas. The pandas views :attr:`images` and :attr:`annotations` serve the table-level
    work (the card's statistics, the validators, the trajectory layouts).
    """

    #: Rows of ``iter_rows`` are read from Arrow in chunks of this many images.
    ROW_CHUNK = 1024

    def __init__(
        self,
        store: DatasetStore,
        taxonomy: Taxonomy,
        images: pa.Table | pd.DataFrame,
        annotations: pa.Table | pd.DataFrame,
        info: dict | None = None,
    ) -> None:
        self.store, self.taxonomy, self.info = store, taxonomy, dict(info or {})
        self.image_table = as_arrow(images).sort_by([("split", "ascending"), ("image_id", "ascending")])
        # Instances sorted by image (stable): one image's instances are a contiguous slice.
        self.instance_table = as_arrow(annotations)
        instance_ids = column_values(self.instance_table, "image_id")
        if any(a > b for a, b in zip(instance_ids, instance_ids[1:], strict=False)):  # sorting copies
            self.instance_table = self.instance_table.sort_by([("image_id", "ascending")])
            instance_ids = sorted(instance_ids)
        self._ranges = _runs(instance_ids)
        self._split_ranges = _runs(column_values(self.image_table, "split"))
        self._last_decoded = threading.local()
        stems = Counter(file_stem(i) for i in column_values(self.image_table, "image_id"))
        duplicated = sorted(stem for stem, count in stems.items() if count > 1)
        if duplicated:
            raise ExportError(f"image ids of file names {duplicated} map to the same release file name")

    @cached_property
    def images(self) -> pd.DataFrame:
        """The released images as a pandas DataFrame (row i = the i-th of :meth:`iter_rows`)."""
        return self.image_table.to_pandas()

    @cached_property
    def annotations(self) -> pd.DataFrame:
        """The instances as a pandas DataFrame, sorted by image_id."""
        return self.instance_table.to_pandas()

    @property
    def splits(self) -> list[str]:
        order = {"train": 0, "val": 1, "test": 2}
        return sorted(self._split_ranges, key=lambda s: (order.get(s, 9), s))

    def split_images(self, split: str) -> pd.DataFrame:
        start, end = self._split_ranges.get(split, (0, 0))
        return self.images.iloc[start:end]

    def instances(self, image_id: str) -> pd.DataFrame:
        """The instances of one image (empty frame when it has none), in row order."""
        start, end = self._ranges.get(image_id, (0, 0))
        return self.annotations.iloc[start:end]

    def iter_rows(self, split: str | None = None) -> Iterator[ImageRow]:
        """The released images (of one split) as :class:`ImageRow`, in release order."""
        start, end = self._split_ranges.get(split, (0, 0)) if split else (0, self.image_table.num_rows)
        for offset in range(start, end, self.ROW_CHUNK):
            chunk = self.image_table.slice(offset, min(self.ROW_CHUNK, end - offset))
            yield from map(
                ImageRow._make, zip(*(column_values(chunk, f) for f in ImageRow._fields), strict=True)
            )

    def instance_columns(self, image_ids: list[str], columns: list[str]) -> dict[str, list]:
        """Columns of the instances of the given images, image by image, as Python lists."""
        out: dict[str, list] = {name: [] for name in columns}
        for image_id in image_ids:
            start, end = self._ranges.get(image_id, (0, 0))
            if end > start:
                part = self.instance_table.slice(start, end - start)
                for name in columns:
                    out[name] += column_values(part, name)
        return out

    def decoded(self, row) -> DecodedInstances:
        """The instances of an image row, decoded; the last image's are kept (per thread), so
        formats written image by image in one pass decode each image once."""
        last = getattr(self._last_decoded, "value", None)
        if last is None or last.image_id != row.image_id:
            start, end = self._ranges.get(row.image_id, (0, 0))
            part = self.instance_table.slice(start, end - start)
            rles = column_values(part, "rle")
            height, width = int(row.height), int(row.width)
            last = DecodedInstances(
                row.image_id,
                [decode_mask(rle, height, width) for rle in rles],
                rle_boxes(column_values(part, "height"), column_values(part, "width"), rles),
                np.array(column_values(part, "class_id"), dtype=np.int64),
                np.array(column_values(part, "z_order"), dtype=np.int64),
            )
            self._last_decoded.value = last
        return last

    def class_map(self, row) -> np.ndarray:
        """The (H, W) uint8 semantic map of an image row (foreground z_order wins)."""
        d = self.decoded(row)
        return paint_class_map(d.masks, d.boxes, d.class_ids, d.z_orders, row.height, row.width)

    def image_bytes(self, row) -> bytes:
        return self.store.read_bytes(row.uri)

    def rgb(self, row) -> np.ndarray:
        from dataset_pipeline.captures import decode_image

        return decode_image(self.image_bytes(row), row.uri).rgb

    def image_file(self, row) -> str:
        """``<split>/<stem><ext>``: where the image sits under the release's ``images/``."""
        ext = posixpath.splitext(row.uri)[1].lower() or ".png"
        return f"{row.split}/{file_stem(row.image_id)}{ext}"


def _runs(values: list) -> dict:
    """value -> (start, end) of each run of equal values in a sorted list.

    >>> _runs(["a", "a", "b"])
    {'a': (0, 2), 'b': (2, 3)}
    """
    runs: dict = {}
    for index, value in enumerate(values):
        start, _ = runs.get(value, (index, index))
        runs[value] = (start, index + 1)
    return runs


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

    @contextlib.contextmanager
    def new_local_file(self, relative: str) -> Iterator[str]:
        """A temporary local path to write ``relative`` at (for a library that wants a path,
        h5py, or a file written in pieces); it is put into the release atomically when the block
        ends without an error, and removed either way."""
        import tempfile

        handle, path = tempfile.mkstemp(suffix=posixpath.splitext(relative)[1])
        os.close(handle)
        try:
            yield path
            self.store.put_file(self.key(relative), path)
        finally:
            os.unlink(path)

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
    import pandas as pd

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

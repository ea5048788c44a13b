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

from dataset_pipeline.masks import decode_mask_box, paint_class_map, rle_boxes
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
    """One image's instances decoded: their tight boxes ``(x0, y0, x1, y1)``, each mask within
    its box (column-major bool, :func:`~dataset_pipeline.masks.decode_mask_box`: a fraction of
    a frame each), class ids and z_order, in the instances' row order."""

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
    unit = column.type.unit
    return [
        None if ticks is None else _utc(ticks, unit)
        for chunk in column.chunks
        for ticks in chunk.view(pa.int64()).to_pylist()
    ]


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}


def _utc(ticks: int, unit: str) -> datetime.datetime:
    """An Arrow timestamp's ticks (of ``unit``) since the epoch as a UTC datetime (to the µs)."""
    return _EPOCH + datetime.timedelta(microseconds=ticks * 10**6 // _PER_SECOND[unit])


class ReleaseContent:
    """What a release holds: images with their split, and the instances that label them.

    Given as three tables, pyarrow Tables or pandas DataFrames: the captures, the splits
    (``image_id``, ``split``: the released images are the captures with a split) and the
    reference instances (one annotator's per image, as
    :func:`dataset_pipeline.baseline_model.reference_annotations` chooses them; those of
    images not released are left out). ``dataset_release`` uses it under its own name too
    (``release.ReleaseContent``). The tables are kept as given, as Arrow: the release order (split, then image_id)
    and each image's instance rows are positions worked out once, in Python, so no table is
    copied, sorted or filtered, and neither pandas nor ``pyarrow.compute`` is loaded. The
    per-image exporters read one image's cells at a time (:meth:`iter_rows`,
    :meth:`decoded`, :meth:`instance_columns`). The pandas views :attr:`images` and
    :attr:`annotations` serve the table-level work (the card's statistics, the validators,
    the trajectory layouts).
    """

    def __init__(
        self,
        store: DatasetStore,
        taxonomy: Taxonomy,
        images: pa.Table | pd.DataFrame,
        annotations: pa.Table | pd.DataFrame,
        splits: pa.Table | pd.DataFrame,
        info: dict | None = None,
    ) -> None:
        self.store, self.taxonomy, self.info = store, taxonomy, dict(info or {})
        self.image_table, self.instance_table = as_arrow(images), as_arrow(annotations)
        splits = as_arrow(splits)
        split_of: dict[str, str] = {}
        for image_id, split in zip(
            column_values(splits, "image_id"), column_values(splits, "split"), strict=True
        ):
            split_of.setdefault(image_id, split)  # an image listed twice keeps its first split
        released = sorted(
            (split_of[image_id], image_id, position)
            for position, image_id in enumerate(column_values(self.image_table, "image_id"))
            if image_id in split_of
        )
        #: rows of ``image_table`` in release order
        self._image_positions = [position for _, _, position in released]
        self._split_ranges = {
            split: (start, end) for split, start, end in _run_list([s for s, _, _ in released])
        }
        self._image_cells = _Cells(self.image_table, [f for f in ImageRow._fields if f != "split"])
        released_ids = {image_id for _, image_id, _ in released}
        # Each released image's instance rows, as runs (one run when the table is grouped by image).
        self._instance_runs: dict[str, list[tuple[int, int]]] = {}
        for image_id, start, end in _run_list(column_values(self.instance_table, "image_id")):
            if image_id in released_ids:
                self._instance_runs.setdefault(image_id, []).append((start, end))
        self._last_decoded = threading.local()
        stems = Counter(file_stem(image_id) for _, image_id, _ in released)
        duplicated = sorted(stem for stem, count in stems.items() if count > 1)
        if duplicated:
            raise ExportError(f"image ids of file names {duplicated} map to the same release file name")

    @cached_property
    def images(self) -> pd.DataFrame:
        """The released images as a pandas DataFrame, the captures' columns and ``split``
        (row i = the i-th of :meth:`iter_rows`)."""
        frame = self.image_table.to_pandas().iloc[self._image_positions].reset_index(drop=True)
        return frame.assign(
            split=[s for s, (start, end) in self._split_ranges.items() for _ in range(start, end)]
        )

    @cached_property
    def annotations(self) -> pd.DataFrame:
        """The released images' instances as a pandas DataFrame, sorted by image_id (each
        image's in their row order)."""
        order = [
            position
            for image_id in sorted(self._instance_runs)
            for start, end in self._instance_runs[image_id]
            for position in range(start, end)
        ]
        return self.instance_table.to_pandas().iloc[order].reset_index(drop=True)

    @property
    def splits(self) -> list[str]:
        order = {"train": 0, "val": 1, "test": 2}
        return sorted(self._split_ranges, key=lambda s: (order.get(s, 9), s))

    def split_images(self, split: str) -> pd.DataFrame:
        start, end = self._split_ranges.get(split, (0, 0))
        return self.images.iloc[start:end]

    def instances(self, image_id: str) -> pd.DataFrame:
        """The instances of one image (empty frame when it has none), in row order."""
        frame = self.annotations
        start, end = (
            frame.image_id.searchsorted(image_id, "left"),
            frame.image_id.searchsorted(image_id, "right"),
        )
        return frame.iloc[start:end]

    def iter_rows(self, split: str | None = None) -> Iterator[ImageRow]:
        """The released images (of one split) as :class:`ImageRow`, in release order."""
        for name, (start, end) in self._split_ranges.items():
            if split is None or name == split:
                for position in self._image_positions[start:end]:
                    cells = self._image_cells.row(position)
                    yield ImageRow(
                        cells["image_id"],
                        name,
                        cells["uri"],
                        cells["width"],
                        cells["height"],
                        cells["capture_ts"],
                    )

    def _instances_of(self, image_id: str) -> pa.Table | None:
        """The instance rows of one image (a zero-copy slice; None when it has none)."""
        runs = self._instance_runs.get(image_id)
        if not runs:
            return None
        if len(runs) == 1:
            return self.instance_table.slice(runs[0][0], runs[0][1] - runs[0][0])
        import pyarrow as pa

        return pa.concat_tables([self.instance_table.slice(start, end - start) for start, end in runs])

    def instance_columns(self, image_ids: list[str], columns: list[str]) -> dict[str, list]:
        """Columns of the instances of the given images, image by image, as Python lists."""
        out: dict[str, list] = {name: [] for name in columns}
        for image_id in image_ids:
            part = self._instances_of(image_id)
            if part is not None:
                for name in columns:
                    out[name] += column_values(part, name)
        return out

    def decoded(self, row) -> DecodedInstances:
        """The instances of an image row, decoded; the last image's are kept (per thread), so
        formats written image by image in one pass decode each image once."""
        last = getattr(self._last_decoded, "value", None)
        if last is None or last.image_id != row.image_id:
            values = self.instance_columns([row.image_id], ["rle", "height", "width", "class_id", "z_order"])
            rles = values["rle"]
            height, width = int(row.height), int(row.width)
            boxes = rle_boxes(values["height"], values["width"], rles)
            last = DecodedInstances(
                row.image_id,
                [decode_mask_box(rle, height, width, box) for rle, box in zip(rles, boxes, strict=True)],
                boxes,
                np.array(values["class_id"], dtype=np.int64),
                np.array(values["z_order"], dtype=np.int64),
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


def _run_list(values: list) -> list[tuple]:
    """``(value, start, end)`` of each run of equal consecutive values.

    >>> _run_list(["a", "a", "b", "a"])
    [('a', 0, 2), ('b', 2, 3), ('a', 3, 4)]
    """
    runs: list[tuple] = []
    for index, value in enumerate(values):
        if runs and runs[-1][0] == value:
            runs[-1] = (value, runs[-1][1], index + 1)
        else:
            runs.append((value, index, index + 1))
    return runs


class _Cells:
    """Some columns of a table read one row at a time, in place (timestamps as UTC datetimes):
    a row's values without a Python object per cell of the table."""

    def __init__(self, table: pa.Table, names: list[str]) -> None:
        import pyarrow as pa

        self._columns: dict[str, tuple[pa.Array, str | None]] = {}
        for name in names:
            column = table.column(name)
            if column.num_chunks == 0:  # an empty table: no row is ever read
                continue
            array = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
            unit = column.type.unit if pa.types.is_timestamp(column.type) else None
            self._columns[name] = (array.view(pa.int64()) if unit else array, unit)

    def row(self, position: int) -> dict:
        values = {}
        for name, (array, unit) in self._columns.items():
            value = array[position].as_py()
            values[name] = _utc(value, unit) if unit and value is not None else value
        return values


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

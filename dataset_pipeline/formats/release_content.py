"""What a release holds, as every exporter reads it: images with their split, and their instances.

:class:`ReleaseContent` is the shared model of the exporters (``formats/<format>/exporter.py``):
the released images (captures rows plus their split) and the reference instances of each,
under one taxonomy, held as Arrow tables and read one image (or one split) at a time; COCO and
the per-image formats need nothing else, so a release written from Parquet tables does not
load pandas. Formats that group frames into trajectories, and the validators, use its pandas
views. Each image's masks are decoded once for all formats (:meth:`ReleaseContent.decoded`).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import posixpath
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from dataset_pipeline import layout
from dataset_pipeline.formats.arrow import Cells, as_arrow, column_values, run_list
from dataset_pipeline.images import decode_image
from dataset_pipeline.masks import decode_mask_box, paint_class_map, rle_boxes
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.taxonomy import Taxonomy

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


#: Bump when an exporter's output changes for the same inputs: releases get new versions, and no
#: file of an earlier layout is reused (it is part of every unit's digest).
EXPORT_LAYOUT_VERSION = 3
#: A shard holds at most about this many images of one split and one batch (whole episodes).
SHARD_IMAGES = 1000


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
            split: (start, end) for split, start, end in run_list([s for s, _, _ in released])
        }
        self._image_cells = Cells(self.image_table, [f for f in ImageRow._fields if f != "split"])
        released_ids = {image_id for _, image_id, _ in released}
        # Each released image's instance rows, as runs (one run when the table is grouped by image).
        self._instance_runs: dict[str, list[tuple[int, int]]] = {}
        for image_id, start, end in run_list(column_values(self.instance_table, "image_id")):
            if image_id in released_ids:
                self._instance_runs.setdefault(image_id, []).append((start, end))
        self._last_decoded = threading.local()
        self._digests: dict[tuple[str, str], str] = {}
        self._shards: dict[tuple[str, int], list[tuple[str, list[ImageRow]]]] = {}
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

    @cached_property
    def _annotation_ranges(self) -> dict[str, tuple[int, int]]:
        """image_id -> its rows' (start, end) in :attr:`annotations` (which is in this order).

        ``Series.searchsorted`` on the Arrow-backed id column converts the whole column to NumPy
        on every call: an image's look-up cost the corpus's size (34 s to check a 712-image shard
        at 40k images, 10 s at 10k)."""
        ranges, start = {}, 0
        for image_id in sorted(self._instance_runs):
            end = start + sum(stop - first for first, stop in self._instance_runs[image_id])
            ranges[image_id] = (start, end)
            start = end
        return ranges

    def instances(self, image_id: str) -> pd.DataFrame:
        """The instances of one image (empty frame when it has none), in row order."""
        start, end = self._annotation_ranges.get(image_id, (0, 0))
        return self.annotations.iloc[start:end]

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
        return decode_image(self.image_bytes(row), row.uri).rgb

    @cached_property
    def _sha256_of(self) -> dict[str, str]:
        if "sha256" not in self.image_table.column_names:
            return {}
        ids, shas = column_values(self.image_table, "image_id"), column_values(self.image_table, "sha256")
        return dict(zip(ids, shas, strict=True))

    @cached_property
    def _taxonomy_digest(self) -> str:
        classes = [c.__dict__ for c in self.taxonomy.classes]
        text = json.dumps([EXPORT_LAYOUT_VERSION, self.taxonomy.tag, classes], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def image_digest(self, row) -> str:
        """The digest of everything an image's exported files are made from: the export layout,
        the taxonomy, the image (id, split, file, size, SHA-256) and its instances (RLE, class,
        z_order). Equal digests = byte-identical files, so a later release links them."""
        cached = self._digests.get((row.image_id, row.split))
        if cached is not None:
            return cached
        sha = self._sha256_of.get(row.image_id)
        if sha is None:  # a captures table without checksums: hash the bytes themselves
            sha = hashlib.sha256(self.image_bytes(row)).hexdigest()
        cells = self.instance_columns([row.image_id], ["rle", "class_id", "z_order"])
        text = json.dumps(
            [self._taxonomy_digest, row.image_id, row.split, row.uri, int(row.width), int(row.height), sha,
             self._metadata_of.get(row.image_id), cells["rle"], [int(c) for c in cells["class_id"]],
             [int(z) for z in cells["z_order"]]],
            default=str,
        )  # fmt: skip
        digest = self._digests[(row.image_id, row.split)] = hashlib.sha256(text.encode()).hexdigest()
        return digest

    def shards(self, split: str, max_images: int = SHARD_IMAGES) -> list[tuple[str, list[ImageRow]]]:
        """The split's images cut into shards, (name, rows) in release order: per batch (the
        image id's first part), at most ``max_images`` each unless one episode is longer, never
        cutting an episode. A new batch makes new shards and leaves the others' as they were.

        Named ``<batch>-<k>``; their digests (:func:`units_digest` of the rows) say when one changed.
        Cut once per split and kept: every shard's step and the assembly ask for them.
        """
        cached = self._shards.get((split, max_images))
        if cached is None:
            cached = self._shards[(split, max_images)] = self._cut_shards(split, max_images)
        return cached

    def _cut_shards(self, split: str, max_images: int) -> list[tuple[str, list[ImageRow]]]:
        out: list[tuple[str, list[ImageRow]]] = []
        episode_of = self._episode_of
        current: list[ImageRow] = []
        batch, number = None, 0
        for row in self.iter_rows(split):
            row_batch = row.image_id.split("/", 1)[0]
            if row_batch != batch:
                if current:
                    out.append((f"{batch}-{number}", current))
                batch, number, current = row_batch, 0, []
            elif len(current) >= max_images and episode_of.get(row.image_id) != episode_of.get(
                current[-1].image_id
            ):
                out.append((f"{batch}-{number}", current))
                number, current = number + 1, []
            current.append(row)
        if current:
            out.append((f"{batch}-{number}", current))
        return out

    def units_digest(self, rows) -> str:
        """One digest over several images' (a shard's, an episode's), in their order."""
        joined = "".join(self.image_digest(r) for r in rows)
        return hashlib.sha256(joined.encode()).hexdigest()

    #: Capture metadata the trajectory formats write (timestamps, frame order, camera, scene).
    DIGEST_METADATA = ("capture_ts", "scene_id", "episode_id", "frame_index", "camera_model", "lighting")

    @cached_property
    def _metadata_of(self) -> dict[str, list]:
        names = [c for c in self.DIGEST_METADATA if c in self.image_table.column_names]
        ids = column_values(self.image_table, "image_id")
        columns = [column_values(self.image_table, c) for c in names]
        return {image_id: list(values) for image_id, *values in zip(ids, *columns, strict=True)}

    @cached_property
    def _episode_of(self) -> dict[str, object]:
        if "episode_id" not in self.image_table.column_names:
            return {}
        ids, episodes = (
            column_values(self.image_table, "image_id"),
            column_values(self.image_table, "episode_id"),
        )
        return dict(zip(ids, episodes, strict=True))

    def image_file(self, row) -> str:
        """``images/<split>/<stem><ext>``: the image's file in the release folder."""
        ext = posixpath.splitext(row.uri)[1].lower() or ".png"
        return layout.release_image_file(row.split, file_stem(row.image_id), ext)

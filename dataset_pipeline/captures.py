"""Capture ingestion: an upload batch's manifest and images → the captures table.

An upload batch is a folder ``incoming/<batch>/`` holding images, optional depth
PNGs and ``manifest.csv`` (one row per image, with provenance). Ingestion decodes
every image completely, records its size and checksum, and splits the rows in two:

* the **captures table** (DESIGN.md's data model), one row per usable image;
* the **quarantine table**: rows that cannot be used (missing, empty, truncated or
  undecodable image, image above the pixel limit, a row with an invalid value),
  each with the file and the reason. A quarantined row does not stop the others.

A manifest that is structurally wrong (not CSV, a required column missing, a path
that leaves the batch folder, duplicate images or ids) refuses the whole batch with a
:class:`ManifestError` naming the file, the row and the column: nothing is written.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dataset_pipeline.figures import spread
from dataset_pipeline.store import DatasetStore, StoreKeyError, join_key, normalize_key

MANIFEST_FILE = "manifest.csv"
PROMPTS_FILE = "prompts.csv"
REQUIRED_MANIFEST_COLUMNS: tuple[str, ...] = (
    "image_file",
    "capture_ts",
    "camera_model",
    "scene_id",
    "lighting",
    "episode_id",
    "frame_index",
)
OPTIONAL_MANIFEST_COLUMNS: tuple[str, ...] = ("image_id", "depth_file", "post_processing")
CAPTURE_COLUMNS: tuple[str, ...] = (
    "image_id",
    "uri",
    "sha256",
    "width",
    "height",
    "capture_ts",
    "camera_model",
    "scene_id",
    "lighting",
    "episode_id",
    "frame_index",
    "depth_uri",
    "batch",
    "post_processing",
)
QUARANTINE_COLUMNS: tuple[str, ...] = ("batch", "manifest_row", "image_file", "image_id", "reason")
DEFAULT_MAX_PIXELS = 50_000_000


class ManifestError(ValueError):
    """The batch's manifest cannot be used at all; the message names file, row and column."""


@dataclass(frozen=True)
class DecodedImage:
    """Facts of a fully decoded image."""

    width: int
    height: int
    rgb: np.ndarray


_BATCH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_batch_name(batch: str) -> str:
    """Return ``batch`` if it is usable as a partition key and a folder name, else raise ValueError.

    >>> check_batch_name("2026-11-24-kitchen-b")
    '2026-11-24-kitchen-b'
    """
    if not isinstance(batch, str) or not _BATCH_NAME.match(batch) or ".." in batch:
        raise ValueError(
            f"batch name {batch!r} is not allowed: use letters, digits, '.', '_' and '-' "
            "(at most 128, not starting with a separator)"
        )
    return batch


def upload_prefix(batch: str) -> str:
    """Store prefix of a batch's raw upload."""
    return join_key("incoming", check_batch_name(batch))


def captures_key(batch: str) -> str:
    """Store key of a batch's captures table."""
    return join_key("tables", "captures", f"{check_batch_name(batch)}.parquet")


def quarantine_key(batch: str) -> str:
    """Store key of a batch's quarantine table."""
    return join_key("tables", "quarantine", f"{check_batch_name(batch)}.parquet")


def find_ready_batches(store: DatasetStore) -> list[str]:
    """Batches under ``incoming/`` whose manifest exists (an upload writes its manifest last).

    Folders whose names are not valid batch names are left out (see :func:`check_batch_name`).
    """
    batches = {posixpath.basename(posixpath.dirname(k)) for k in store.glob(f"incoming/*/{MANIFEST_FILE}")}
    return sorted(b for b in batches if _BATCH_NAME.match(b) and ".." not in b)


def image_id_for(batch: str, image_file: str) -> str:
    """The stable image id of a manifest row: ``<batch>/<image path without extension>``.

    >>> image_id_for("2026-11-24-kitchen-b", "images/frame_0001.jpg")
    '2026-11-24-kitchen-b/images/frame_0001'
    """
    return f"{batch}/{posixpath.splitext(image_file)[0]}"


def read_manifest(data: bytes, source: str) -> pd.DataFrame:
    """Parse and structurally validate a manifest CSV; every value is kept as a string.

    Raises :class:`ManifestError` naming ``source``, the row (1-based, header is row 1)
    and the column for: unreadable CSV, a missing required column, an empty or escaping
    ``image_file``, duplicate image files or image ids.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ManifestError(f"{source}: not a readable CSV file ({exc})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in REQUIRED_MANIFEST_COLUMNS if c not in frame.columns]
    if missing:
        raise ManifestError(
            f"{source}: missing required column(s) {', '.join(repr(c) for c in missing)}; "
            f"a manifest needs {', '.join(REQUIRED_MANIFEST_COLUMNS)}"
        )
    if frame.empty:
        raise ManifestError(f"{source}: the manifest lists no images")
    for column in OPTIONAL_MANIFEST_COLUMNS:
        if column not in frame.columns:
            frame[column] = ""
    frame = frame.apply(lambda col: col.str.strip())
    for index, image_file in enumerate(frame["image_file"]):
        row = index + 2
        if not image_file:
            raise ManifestError(f"{source}: row {row}, column 'image_file': empty")
        for column in ("image_file", "depth_file"):
            value = frame.at[index, column]
            if value:
                try:
                    normalize_key(value)
                except StoreKeyError as exc:
                    raise ManifestError(f"{source}: row {row}, column {column!r}: {exc}") from None
    for column in ("image_file", "image_id"):
        values = frame[column][frame[column] != ""]
        duplicated = values[values.duplicated(keep="first")]
        if not duplicated.empty:
            index = int(duplicated.index[0])
            raise ManifestError(
                f"{source}: row {index + 2}, column {column!r}: duplicate value {duplicated.iloc[0]!r}"
            )
    return frame


def decode_image(data: bytes, source: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode an image completely (a truncated file fails here, not in training).

    Raises ValueError with ``source`` and the reason for an empty, truncated or
    undecodable file, or one with more than ``max_pixels`` pixels (checked from the
    header, before the pixels are decoded).
    """
    from PIL import Image, UnidentifiedImageError

    # ``max_pixels`` is checked from the header below, before any pixel is decoded; PIL's own fixed
    # bomb limit (which would answer first for huge images, without the configured figure) is off.
    Image.MAX_IMAGE_PIXELS = None
    if not data:
        raise ValueError(f"{source}: empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width <= 0 or height <= 0:
                raise ValueError(f"{source}: invalid size {width}x{height}")
            if width * height > max_pixels:
                raise ValueError(
                    f"{source}: {width}x{height} = {width * height} pixels exceeds the limit of {max_pixels}"
                )
            image.load()
            rgb = np.asarray(image.convert("RGB"))
    except UnidentifiedImageError:
        raise ValueError(f"{source}: not a decodable image") from None
    except Image.DecompressionBombError as exc:
        raise ValueError(f"{source}: refused as a decompression bomb ({exc})") from None
    except (OSError, SyntaxError) as exc:
        raise ValueError(f"{source}: corrupt or truncated image ({exc})") from None
    return DecodedImage(width=width, height=height, rgb=rgb)


@dataclass
class IngestResult:
    """The outcome of ingesting one batch."""

    batch: str
    captures: pd.DataFrame
    quarantine: pd.DataFrame
    thumbnails: dict[str, np.ndarray] = field(default_factory=dict)
    unlisted_files: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def quarantine_share(self) -> float:
        total = len(self.captures) + len(self.quarantine)
        return len(self.quarantine) / total if total else 0.0


def ingest_batch(
    store: DatasetStore,
    batch: str,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    thumbnails: int = 24,
    thumbnail_size: int = 160,
    workers: int = 8,
) -> IngestResult:
    """Read ``incoming/<batch>/``, decode every listed image, and build the two tables.

    Reads only; the caller stores the tables. ``thumbnails`` images, spread evenly over
    the manifest, are kept as small RGB arrays for the contact sheet.
    """
    started = time.perf_counter()
    prefix = upload_prefix(batch)
    manifest_key = join_key(prefix, MANIFEST_FILE)
    if not store.exists(manifest_key):
        raise ManifestError(f"{store.url(manifest_key)}: batch {batch!r} has no {MANIFEST_FILE}")
    manifest = read_manifest(store.read_bytes(manifest_key), store.url(manifest_key))
    present = set(store.list(prefix, recursive=True))

    def load(index: int) -> tuple[int, bytes | None, str | None]:
        key = join_key(prefix, manifest.at[index, "image_file"])
        if key not in present:
            return index, None, "missing: the manifest lists it but the upload has no such file"
        try:
            return index, store.read_bytes(key), None
        except (OSError, RuntimeError) as exc:
            return index, None, f"unreadable: {exc}"

    thumbnail_rows = set(spread(len(manifest), thumbnails))
    captures: list[dict[str, object]] = []
    quarantine: list[dict[str, object]] = []
    kept_thumbnails: dict[str, np.ndarray] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for index, data, problem in pool.map(load, range(len(manifest))):
            row = manifest.iloc[index]
            image_file = row["image_file"]
            image_id = row["image_id"] or image_id_for(batch, image_file)
            key = join_key(prefix, image_file)
            reason = problem or _row_problem(row)
            decoded = None
            if reason is None:
                assert data is not None
                try:
                    decoded = decode_image(data, image_file, max_pixels)
                except ValueError as exc:
                    reason = str(exc).removeprefix(f"{image_file}: ")
            if reason is not None:
                quarantine.append(
                    {
                        "batch": batch,
                        "manifest_row": index + 2,
                        "image_file": image_file,
                        "image_id": image_id,
                        "reason": reason,
                    }
                )
                continue
            assert decoded is not None and data is not None
            depth_key = join_key(prefix, row["depth_file"]) if row["depth_file"] else None
            captures.append(
                {
                    "image_id": image_id,
                    "uri": key,
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "width": decoded.width,
                    "height": decoded.height,
                    "capture_ts": _utc(row["capture_ts"]),
                    "camera_model": row["camera_model"],
                    "scene_id": row["scene_id"],
                    "lighting": row["lighting"],
                    "episode_id": row["episode_id"],
                    "frame_index": int(row["frame_index"]),
                    "depth_uri": depth_key if depth_key in present else None,
                    "batch": batch,
                    "post_processing": row["post_processing"] or None,
                }
            )
            if index in thumbnail_rows:
                kept_thumbnails[image_id] = _thumbnail(decoded.rgb, thumbnail_size)

    listed = {join_key(prefix, f) for f in manifest["image_file"]}
    listed |= {join_key(prefix, f) for f in manifest["depth_file"] if f}
    unlisted = sorted(
        k for k in present - listed if posixpath.basename(k) not in (MANIFEST_FILE, PROMPTS_FILE)
    )
    return IngestResult(
        batch=batch,
        captures=captures_frame(captures),
        quarantine=pd.DataFrame(quarantine, columns=list(QUARANTINE_COLUMNS)).astype(
            {"manifest_row": "int64"}
        ),
        thumbnails=kept_thumbnails,
        unlisted_files=unlisted,
        seconds=time.perf_counter() - started,
    )


def captures_frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    """The captures table with its column order and dtypes, also when empty."""
    frame = pd.DataFrame(rows, columns=list(CAPTURE_COLUMNS))
    return frame.astype(
        {
            "width": "int64",
            "height": "int64",
            "frame_index": "int64",
            "capture_ts": "datetime64[us, UTC]",
        }
    )


def _row_problem(row: pd.Series) -> str | None:
    """Why a manifest row's values cannot be used, or None."""
    for column in REQUIRED_MANIFEST_COLUMNS:
        if not row[column]:
            return f"manifest column {column!r} is empty"
    try:
        frame_index = int(row["frame_index"])
    except ValueError:
        return f"manifest column 'frame_index' is not an integer: {row['frame_index']!r}"
    if frame_index < 0:
        return f"manifest column 'frame_index' is negative: {frame_index}"
    try:
        pd.Timestamp(row["capture_ts"])
    except (ValueError, TypeError):
        return f"manifest column 'capture_ts' is not an ISO 8601 timestamp: {row['capture_ts']!r}"
    return None


def _utc(value: str) -> pd.Timestamp:
    """A manifest timestamp in UTC (one without a zone is taken as UTC)."""
    stamp = pd.Timestamp(value)
    return stamp.tz_convert("UTC") if stamp.tzinfo else stamp.tz_localize("UTC")


def _thumbnail(rgb: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    image = Image.fromarray(rgb)
    image.thumbnail((size, size))
    return np.asarray(image)


def summarize_captures(captures: pd.DataFrame) -> pd.DataFrame:
    """Image counts per scene (rows) and lighting (columns), with totals."""
    if captures.empty:
        return pd.DataFrame()
    table = pd.crosstab(captures["scene_id"], captures["lighting"], margins=True, margins_name="total")
    return table

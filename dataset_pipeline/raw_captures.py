"""raw_captures: an upload batch's manifest and images → the captures and quarantine tables.

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
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dataset_pipeline import layout, schemas
from dataset_pipeline.figures import contact_sheet, png_bytes, spread
from dataset_pipeline.images import DEFAULT_MAX_PIXELS, decode_image, thumbnail
from dataset_pipeline.layout import StoreKeyError, normalize_key
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.validation import Expectation, validate_table
from dataset_pipeline.verdicts import Verdict

#: Lighting values a batch may have unless the ``capture_rules`` resource names others.
#: ``unknown`` is what a robot dataset's frames carry (its logs do not record the light).
DEFAULT_LIGHTING: tuple[str, ...] = ("daylight", "dim", "warm", "overcast", "fluorescent", "mixed", "unknown")


class ManifestError(ValueError):
    """The batch's manifest cannot be used at all; the message names file, row and column."""


def find_ready_batches(store: DatasetStore) -> list[str]:
    """Batches under ``incoming/`` whose manifest exists (an upload writes its manifest last), or
    whose robot-dataset upload is complete (``UPLOAD_COMPLETE`` written last).

    Folders whose names are not valid batch names are left out (see :func:`layout.check_batch_name`).
    """
    batches = {layout.batch_of_manifest(k) for k in store.glob(layout.MANIFESTS_GLOB)}
    batches |= {layout.batch_of_manifest(k) for k in store.glob(layout.DATASET_MARKERS_GLOB)}
    return sorted(b for b in batches if layout.is_batch_name(b))


def batch_folder(store: DatasetStore, batch: str) -> str:
    """Where a batch's manifest and images are: its upload, or a robot dataset's sampled frames."""
    if store.exists(layout.upload_complete_key(batch)) and not store.exists(layout.manifest_key(batch)):
        return layout.frames_prefix(batch)
    return layout.upload_prefix(batch)


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
    missing = [c for c in schemas.MANIFEST_REQUIRED if c not in frame.columns]
    if missing:
        raise ManifestError(
            f"{source}: missing required column(s) {', '.join(repr(c) for c in missing)}; "
            f"a manifest needs {', '.join(schemas.MANIFEST_REQUIRED)}"
        )
    if frame.empty:
        raise ManifestError(f"{source}: the manifest lists no images")
    for column in schemas.MANIFEST_OPTIONAL:
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
    thumbnails: int = 12,
    thumbnail_size: int = 240,
    workers: int = 8,
) -> IngestResult:
    """Read ``incoming/<batch>/``, decode every listed image, and build the two tables.

    Reads only; the caller stores the tables. ``thumbnails`` images, spread evenly over
    the manifest, are kept as small RGB arrays for the contact sheet.
    """
    started = time.perf_counter()
    folder = batch_folder(store, batch)
    manifest_key = layout.join_key(folder, layout.MANIFEST_FILE)
    if not store.exists(manifest_key):
        raise ManifestError(f"{store.url(manifest_key)}: batch {batch!r} has no {layout.MANIFEST_FILE}")
    manifest = read_manifest(store.read_bytes(manifest_key), store.url(manifest_key))
    present = set(store.list(folder, recursive=True))

    def file_key(relative: str) -> str:
        return layout.join_key(folder, relative)

    def load(index: int) -> tuple[int, bytes | None, str | None]:
        key = file_key(manifest.at[index, "image_file"])
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
            key = file_key(image_file)
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
            depth_key = file_key(row["depth_file"]) if row["depth_file"] else None
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
                    "source_episode": int(row["episode_index"]) if row["episode_index"] else None,
                    "timestamp_s": float(row["timestamp"]) if row["timestamp"] else None,
                }
            )
            if index in thumbnail_rows:
                kept_thumbnails[image_id] = thumbnail(decoded.rgb, thumbnail_size)

    listed = {file_key(f) for f in manifest["image_file"]}
    listed |= {file_key(f) for f in manifest["depth_file"] if f}
    unlisted = sorted(
        k
        for k in present - listed
        if posixpath.basename(k) not in (layout.MANIFEST_FILE, layout.PROMPTS_FILE, layout.SOURCE_FILE)
    )
    quarantine.extend(_quarantined_episodes(store, batch, folder))
    return IngestResult(
        batch=batch,
        captures=schemas.CAPTURES.frame(captures),
        quarantine=schemas.QUARANTINE.frame(quarantine),
        thumbnails=kept_thumbnails,
        unlisted_files=unlisted,
        seconds=time.perf_counter() - started,
    )


def _quarantined_episodes(store: DatasetStore, batch: str, folder: str) -> list[dict[str, object]]:
    """A robot dataset's episodes that its ingest could not read, as quarantine rows."""
    key = layout.join_key(folder, layout.SOURCE_FILE)
    if folder != layout.frames_prefix(batch) or not store.exists(key):
        return []
    import json

    quarantined = json.loads(store.read_bytes(key)).get("quarantined_episodes") or {}
    return [
        {
            "batch": batch,
            "manifest_row": 0,
            "image_file": f"episode {episode}",
            "image_id": f"{batch}/episode_{int(episode):06d}",
            "reason": reason,
        }
        for episode, reason in sorted(quarantined.items(), key=lambda item: int(item[0]))
    ]


def _row_problem(row: pd.Series) -> str | None:
    """Why a manifest row's values cannot be used, or None."""
    for column in schemas.MANIFEST_REQUIRED:
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


def captures_suite(
    allowed_lighting: tuple[str, ...] | list[str] = DEFAULT_LIGHTING,
    min_side_px: int = 64,
    max_side_px: int = 8192,
) -> list[Expectation]:
    """The expectations every captures table must meet before pre-masking."""
    required = ["image_id", "uri", "sha256", "width", "height", *schemas.MANIFEST_REQUIRED[1:], "batch"]
    suite = [Expectation("ExpectColumnToExist", {"column": c}) for c in required]
    suite += [Expectation("ExpectColumnValuesToNotBeNull", {"column": c}) for c in required]
    suite += [
        Expectation(
            "ExpectColumnValuesToBeBetween", {"column": c, "min_value": min_side_px, "max_value": max_side_px}
        )
        for c in ("width", "height")
    ]
    suite += [
        Expectation(
            "ExpectColumnValuesToBeInSet", {"column": "lighting", "value_set": sorted(allowed_lighting)}
        ),
        Expectation("ExpectColumnValuesToBeUnique", {"column": "image_id"}),
        Expectation("ExpectColumnValuesToBeUnique", {"column": "sha256"}),
        Expectation("ExpectColumnValuesToBeBetween", {"column": "frame_index", "min_value": 0}),
    ]
    return suite


def summarize_captures(captures: pd.DataFrame) -> pd.DataFrame:
    """Image counts per scene (rows) and lighting (columns), with totals."""
    if captures.empty:
        return pd.DataFrame()
    table = pd.crosstab(captures["scene_id"], captures["lighting"], margins=True, margins_name="total")
    return table


def write_ingest(store: DatasetStore, result: IngestResult) -> None:
    """Store the batch's captures and quarantine tables (each write atomic)."""
    store.write_parquet(layout.captures_key(result.batch), result.captures)
    store.write_parquet(layout.quarantine_key(result.batch), result.quarantine)


def contact_sheet_png(result: IngestResult) -> bytes:
    """The thumbnails kept while ingesting, as one captioned PNG (captions: the file names)."""
    captions = [image_id.split("/")[-1] for image_id in result.thumbnails]
    return png_bytes(contact_sheet(list(result.thumbnails.values()), captions, columns=4, cell=240))


def captures_verdict(
    captures: pd.DataFrame,
    allowed_lighting: tuple[str, ...] | list[str] = DEFAULT_LIGHTING,
    min_side_px: int = 64,
    max_side_px: int = 8192,
) -> Verdict:
    """The Great Expectations suite on a batch's captures table (and at least one usable image);
    a failed expectation that a setting decides names the setting."""
    suite = captures_suite(allowed_lighting, min_side_px, max_side_px)
    report = validate_table(captures, suite, name="captures", id_column="image_id")
    settings: dict[str, object] = {}
    for outcome in report.failed:
        column = outcome.expectation.kwargs.get("column")
        if outcome.expectation.type == "ExpectColumnValuesToBeInSet" and column == "lighting":
            settings["allowed_lighting"] = list(allowed_lighting)
        elif outcome.expectation.type == "ExpectColumnValuesToBeBetween" and column in ("width", "height"):
            settings |= {"min_side_px": min_side_px, "max_side_px": max_side_px}
    return Verdict(
        passed=report.success and len(captures) > 0,
        summary=report.summary() if len(captures) else "the batch has no usable image",
        figures={"rows": report.rows, "expectations_failed": len(report.failed)},
        tables={"expectations": pd.DataFrame(report.as_rows())},
        settings=settings,
    )


def quarantine_verdict(
    captures: pd.DataFrame,
    quarantine: pd.DataFrame,
    max_quarantine_share: float,
    min_quarantined_to_block: int = 3,
) -> Verdict:
    """At most ``max_quarantine_share`` of the batch's images were quarantined - or fewer than
    ``min_quarantined_to_block`` images: two bad files in a 39-image upload are 5.1%, and no reason
    to refuse the 37 good ones."""
    total = len(captures) + len(quarantine)
    share = len(quarantine) / total if total else 1.0
    over = share > max_quarantine_share
    blocks = over and (len(quarantine) >= min_quarantined_to_block or captures.empty)
    reasons = quarantine["reason"].str.split(":").str[0].value_counts().to_dict() if len(quarantine) else {}
    summary = (
        f"{len(quarantine)} of {total} images quarantined ({share:.1%}, limit {max_quarantine_share:.1%})"
    )
    if over and not blocks:
        summary += f": over the share, but fewer than {min_quarantined_to_block} images, so the batch goes on"
    if reasons:
        summary += f"; reasons: {reasons}; files: {quarantine['image_file'].head(10).tolist()}"
    return Verdict(
        passed=not blocks,
        summary=summary,
        figures={
            "quarantined": len(quarantine),
            "images": total,
            "share": round(share, 4),
            "limit": max_quarantine_share,
        },
        settings={
            "max_quarantine_share": max_quarantine_share,
            "min_quarantined_to_block": min_quarantined_to_block,
        },
    )

"""reviewed_annotations: a batch's review exports (the review drop folder) → its annotations table.

The drop folder ``reviews/<batch>/`` holds the annotation tools' export files as they
come (CVAT XML, CVAT COCO, COCO, Label Studio JSON, bare or zipped as the tools export them
(read by :mod:`dataset_pipeline.archives`); any sub-folders), and optionally
``peer_review.csv`` (image_file, annotator_id, reviewer_id, accepted[, reviewed_at]): a
peer's verdict on an annotator's work on an image. Every export is imported strictly; if
any one is malformed the batch's table is not written, so what was imported before stays
as it was. Re-importing the same files gives the same table (ids are stable).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field

import pandas as pd

from dataset_pipeline.captures import captures_key, check_batch_name
from dataset_pipeline.importers import (
    AnnotationImportError,
    ImageIndex,
    ImportOptions,
    annotations_frame,
    import_any,
)
from dataset_pipeline.sam2_premasks import premasks_key
from dataset_pipeline.store import DatasetStore, join_key
from dataset_pipeline.taxonomy import Taxonomy

PEER_REVIEW_FILE = "peer_review.csv"
EXPORT_SUFFIXES = (".xml", ".json", ".zip")


def review_prefix(batch: str) -> str:
    return join_key("reviews", check_batch_name(batch))


def annotations_key(batch: str) -> str:
    """Store key of a batch's annotations table."""
    return join_key("tables", "annotations", f"{check_batch_name(batch)}.parquet")


#: Snapshots pulled from a live Label Studio (label_studio_connector) land here, named
#: ``<UTC time>-<digest>.json``; each holds all of the batch's annotations at that time, so only
#: the newest is imported (an annotation deleted in Label Studio disappears with the next pull).
LABEL_STUDIO_PULLS = "label_studio_api"


def list_review_exports(store: DatasetStore, batch: str) -> list[str]:
    """The export files in the batch's review drop folder, in name order (of the Label Studio pulls,
    the newest only)."""
    keys = [
        k for k in store.list(review_prefix(batch), recursive=True) if k.lower().endswith(EXPORT_SUFFIXES)
    ]
    pulls = [k for k in keys if k.startswith(f"{review_prefix(batch)}/{LABEL_STUDIO_PULLS}/")]
    return [k for k in keys if k not in pulls or k == max(pulls)]


def save_label_studio_pull(store: DatasetStore, batch: str, tasks: list[dict], now: str) -> str | None:
    """Keep a pulled snapshot of the batch's annotated tasks as a raw review file, unless the newest
    one holds the same content; returns the new key or None."""
    data = json.dumps(tasks, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(data).hexdigest()[:16]
    prefix = f"{review_prefix(batch)}/{LABEL_STUDIO_PULLS}/"
    previous = sorted(k for k in store.list(prefix.rstrip("/"), recursive=True) if k.endswith(".json"))
    if previous and previous[-1].endswith(f"-{digest}.json"):
        return None
    return store.put_upload(f"{prefix}{now}-{digest}.json", data)


@dataclass
class BatchReviews:
    """What :func:`import_batch_reviews` read."""

    annotations: pd.DataFrame
    files: dict[str, int] = field(default_factory=dict)  # export key -> annotations
    skipped: list[str] = field(default_factory=list)
    peer_reviews: int = 0


def import_batch_reviews(
    store: DatasetStore,
    batch: str,
    taxonomy: Taxonomy,
    label_map: dict[str, str] | None = None,
    default_annotator: str = "unknown",
) -> BatchReviews:
    """Import every export of ``reviews/<batch>/`` against the batch's captures and pre-masks."""
    exports = list_review_exports(store, batch)
    if not exports:
        raise FileNotFoundError(
            f"{store.url(review_prefix(batch))}: no review exports (.xml, .json, .zip) yet"
        )
    captures = store.read_parquet(captures_key(batch))
    premasks = store.read_parquet(premasks_key(batch)) if store.exists(premasks_key(batch)) else None
    images = ImageIndex.from_captures(captures)
    frames, result = [], BatchReviews(annotations=annotations_frame([]))
    for key in exports:
        options = ImportOptions(
            taxonomy,
            source_file=store.url(key),
            label_map=dict(label_map or {}),
            images=images,
            premasks=premasks,
            default_annotator=default_annotator,
        )
        imported = import_any(store.read_bytes(key), options)
        frames.append(imported.annotations)
        result.files[key] = len(imported.annotations)
        result.skipped += [f"{key}: {s}" for s in imported.skipped]
    table = pd.concat(frames, ignore_index=True) if frames else annotations_frame([])
    table = table.drop_duplicates("annotation_id", keep="last").reset_index(drop=True)
    review_key = join_key(review_prefix(batch), PEER_REVIEW_FILE)
    if store.exists(review_key):
        table, result.peer_reviews = apply_peer_reviews(
            table, store.read_bytes(review_key), store.url(review_key), images
        )
    result.annotations = table
    return result


def apply_peer_reviews(
    table: pd.DataFrame, data: bytes, source: str, images: ImageIndex
) -> tuple[pd.DataFrame, int]:
    """Mark an annotator's annotations of an image peer_reviewed with the reviewer's verdict."""
    try:
        sheet = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise AnnotationImportError(source, "document", "", f"not a readable CSV file ({exc})") from None
    for column in ("image_file", "annotator_id", "reviewer_id", "accepted"):
        if column not in sheet.columns:
            raise AnnotationImportError(source, "header", column, "missing column")
    table = table.copy()
    applied = 0
    for number, row in enumerate(sheet.itertuples(index=False)):
        record = f"row {number + 2}"
        verdict = row.accepted.strip().lower()
        if verdict not in ("true", "false", "1", "0", "yes", "no"):
            raise AnnotationImportError(source, record, "accepted", f"{row.accepted!r} is not true/false")
        image = images.find(row.image_file)
        if image is None:
            raise AnnotationImportError(
                source, record, "image_file", f"{row.image_file!r} is not in the batch"
            )
        selected = (table.image_id == image.image_id) & (table.annotator_id == row.annotator_id)
        if not selected.any():
            raise AnnotationImportError(
                source, record, "annotator_id", f"no annotation by {row.annotator_id!r} of {row.image_file!r}"
            )
        table.loc[selected, "review_status"] = "peer_reviewed"
        table.loc[selected, "review_accepted"] = verdict in ("true", "1", "yes")
        applied += 1
    return table, applied

"""reviewed_annotations: a batch's review exports (the review drop folder) → its annotations table.

The drop folder ``reviews/<batch>/`` holds the annotation tools' export files as they
come (CVAT XML, CVAT COCO, COCO, Label Studio JSON, bare or zipped as the tools export them
(read by :mod:`dataset_pipeline.formats.reading`); any sub-folders), and optionally
``peer_review.csv`` (image_file, annotator_id, reviewer_id, accepted[, reviewed_at]): a
peer's verdict on an annotator's work on an image, and ``expert_audit.csv`` (the same columns):
an expert's. The qc_assignments stage writes both sheets with the sampled images to fill in. Every export is imported strictly; if
any one is malformed the batch's table is not written, so what was imported before stays
as it was. Re-importing the same files gives the same table (ids are stable).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field

import pandas as pd

from dataset_pipeline import layout, schemas
from dataset_pipeline.formats.importing import (
    AnnotationImportError,
    ImageIndex,
    ImportOptions,
    annotations_frame,
)
from dataset_pipeline.formats.label_studio.client import LabelStudioClient, batch_export
from dataset_pipeline.formats.reading import import_any
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.taxonomy import Taxonomy

#: The files of a review drop folder that are imported (the tools' exports, bare or zipped).
EXPORT_SUFFIXES = (".xml", ".json", ".zip")


def review_files(store: DatasetStore, batch: str | None = None) -> dict[str, str]:
    """Key -> signature (size and modification stamp / ETag) of every file an import of the batch
    (or of every batch) reads: the exports and the peer-review sheet."""
    prefix = layout.review_prefix(batch) if batch is not None else layout.REVIEWS
    return {
        key: signature
        for key, signature in store.signatures(prefix).items()
        if key.lower().endswith(EXPORT_SUFFIXES)
        or key.endswith(("/" + layout.PEER_REVIEW_FILE, "/" + layout.EXPERT_AUDIT_FILE))
    }


def files_digest(files: dict[str, str]) -> str:
    """One digest of a batch's review files: equal digests = the same files, unchanged.

    >>> files_digest({"reviews/b1/a.json": "12:1.0"}) == files_digest({"reviews/b1/a.json": "12:1.0"})
    True
    """
    return hashlib.sha1(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]


def list_review_exports(store: DatasetStore, batch: str) -> list[str]:
    """The export files in the batch's review drop folder, in name order (of the Label Studio pulls,
    the newest only)."""
    keys = [
        k
        for k in store.list(layout.review_prefix(batch), recursive=True)
        if k.lower().endswith(EXPORT_SUFFIXES)
    ]
    pulls = [k for k in keys if k.startswith(layout.label_studio_pulls_prefix(batch) + "/")]
    return [k for k in keys if k not in pulls or k == max(pulls)]


def save_label_studio_pull(store: DatasetStore, batch: str, tasks: list[dict], now: str) -> str | None:
    """Keep a pulled snapshot of the batch's annotated tasks as a raw review file, unless the newest
    one holds the same content; returns the new key or None.

    Each snapshot holds all of the batch's annotations at that time, so only the newest is
    imported (an annotation deleted in Label Studio disappears with the next pull)."""
    data = json.dumps(tasks, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(data).hexdigest()[:16]
    key = layout.label_studio_pull_key(batch, now, digest)
    prefix = layout.label_studio_pulls_prefix(batch)
    previous = sorted(k for k in store.list(prefix, recursive=True) if k.endswith(".json"))
    if previous and previous[-1].endswith(key.rsplit("-", 1)[-1]):
        return None
    return store.put_upload(key, data)


@dataclass
class BatchReviews:
    """What :func:`import_batch_reviews` read."""

    annotations: pd.DataFrame
    files: dict[str, int] = field(default_factory=dict)  # export key -> annotations
    skipped: list[str] = field(default_factory=list)
    peer_reviews: int = 0
    expert_audits: int = 0
    digest: str = ""  # files_digest of the files read (the review sensor compares it)


def import_batch_reviews(
    store: DatasetStore,
    batch: str,
    taxonomy: Taxonomy,
    label_map: dict[str, str] | None = None,
    default_annotator: str = "unknown",
) -> BatchReviews:
    """Import every export of ``reviews/<batch>/`` against the batch's captures and pre-masks."""
    digest = files_digest(review_files(store, batch))
    exports = list_review_exports(store, batch)
    if not exports:
        raise FileNotFoundError(
            f"{store.url(layout.review_prefix(batch))}: no review exports (.xml, .json, .zip) yet"
        )
    captures = store.read_parquet(layout.captures_key(batch))
    premasks_key = layout.premasks_key(batch)
    premasks = store.read_parquet(premasks_key) if store.exists(premasks_key) else None
    # The propagated masks of the second round (episode_propagation): written after the first
    # import, read here without a dependency (the graph has no cycles; the files close the loop).
    propagated_key = layout.propagated_key(batch)
    propagated = store.read_parquet(propagated_key) if store.exists(propagated_key) else None
    images = ImageIndex.from_captures(captures)
    frames, result = [], BatchReviews(annotations=annotations_frame([]), digest=digest)
    for key in exports:
        options = ImportOptions(
            taxonomy,
            # The store key, not the store's URL: provenance (and the release's version digest)
            # must not carry a machine's path; a message names the key within the store.
            source_file=key,
            label_map=dict(label_map or {}),
            images=images,
            premasks=premasks,
            propagated=propagated,
            default_annotator=default_annotator,
        )
        imported = import_any(store.read_bytes(key), options)
        frames.append(imported.annotations)
        result.files[key] = len(imported.annotations)
        result.skipped += [f"{key}: {s}" for s in imported.skipped]
    table = pd.concat(frames, ignore_index=True) if frames else annotations_frame([])
    table = table.drop_duplicates("annotation_id", keep="last").reset_index(drop=True)
    review_key = layout.peer_review_key(batch)
    if store.exists(review_key):
        table, result.peer_reviews = apply_peer_reviews(
            table, store.read_bytes(review_key), store.url(review_key), images
        )
    audit_key = layout.expert_audit_key(batch)
    if store.exists(audit_key):
        table, result.expert_audits = apply_peer_reviews(
            table, store.read_bytes(audit_key), store.url(audit_key), images, tier="expert_audit"
        )
    result.annotations = table
    return result


def apply_peer_reviews(
    table: pd.DataFrame, data: bytes, source: str, images: ImageIndex, tier: str = "peer_review"
) -> tuple[pd.DataFrame, int]:
    """Mark an annotator's annotations of an image with a verdict: a peer's (``peer_reviewed``,
    ``review_accepted``: first-pass acceptance) or an expert auditor's (``audit_accepted``;
    ``expert_approved`` when accepted)."""
    try:
        sheet = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise AnnotationImportError(source, "document", "", f"not a readable CSV file ({exc})") from None
    for column in schemas.PEER_REVIEW_REQUIRED:
        if column not in sheet.columns:
            raise AnnotationImportError(source, "header", column, "missing column")
    table = table.copy()
    applied = 0
    for number, row in enumerate(sheet.itertuples(index=False)):
        record = f"row {number + 2}"
        verdict = row.accepted.strip().lower()
        if not verdict:
            continue  # a sampled image whose verdict has not come back yet (the sheet as written)
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
        accepted = verdict in ("true", "1", "yes")
        if tier == "expert_audit":
            table.loc[selected, "audit_accepted"] = accepted
            if accepted:
                table.loc[selected, "review_status"] = "expert_approved"
        else:
            table.loc[selected, "review_accepted"] = accepted
            if not (table.loc[selected, "review_status"] == "expert_approved").all():
                table.loc[selected, "review_status"] = "peer_reviewed"
        applied += 1
    return table, applied


def pull_from_label_studio(
    store: DatasetStore, batch: str, client: LabelStudioClient, title: str, taxonomy: Taxonomy, now: str
) -> tuple[int, int, str | None]:
    """A snapshot export (full predictions) of the project ``title``; the batch's annotated tasks are
    kept under ``reviews/<batch>/label_studio_api/`` when they changed since the last pull.

    Returns (project id, annotated tasks of the batch, the new snapshot's key or None when unchanged).
    Nothing stored changes when Label Studio cannot be reached or refuses (LabelStudioError).
    """
    project_id = client.ensure_project(title, taxonomy)
    tasks = batch_export(client.snapshot_export(project_id), batch, client.users())
    return project_id, len(tasks), save_label_studio_pull(store, batch, tasks, now)


def per_annotator(table: pd.DataFrame) -> pd.DataFrame:
    """Per annotator of a batch: annotations, images, hours, SAM 2-assisted masks, mean pre-mask IoU."""
    if not len(table):
        return table
    return (
        table.groupby("annotator_id")
        .agg(
            annotations=("annotation_id", "size"),
            images=("image_id", "nunique"),
            hours=("seconds_spent", lambda s: round(s.sum() / 3600, 2)),
            sam2_assisted=("assistance", lambda s: int((s == "sam2-assisted").sum())),
            propagated_accepted=("assistance", lambda s: int((s == "propagated").sum())),
            propagated_corrected=("assistance", lambda s: int((s == "propagated-corrected").sum())),
            mean_premask_iou=("premask_iou", lambda s: round(s.mean(), 3)),
        )
        .reset_index()
    )


def per_class(table: pd.DataFrame, taxonomy: Taxonomy) -> pd.DataFrame:
    """Annotations per class name, most first."""
    return (
        table.class_id.map(lambda c: taxonomy.by_id(int(c)).name)
        .value_counts()
        .rename_axis("class")
        .reset_index()
    )

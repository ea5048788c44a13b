"""sam2_premasks: every image of a batch gets pre-masks before a person sees it.

Prompts come from the upload's ``prompts.csv`` (a detector's boxes and points, with the
class it saw) when the batch has one; an image without prompts gets automatic masks. A
mask scoring under the threshold is kept but marked ``rejected``; an empty prediction is
not a pre-mask at all (it is counted as a failed prompt).

The pre-masks table has DESIGN.md's columns plus ``height``, ``width`` (the RLE's size)
and ``rejected``.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dataset_pipeline.captures import (
    PROMPTS_FILE,
    captures_key,
    check_batch_name,
    decode_image,
    upload_prefix,
)
from dataset_pipeline.figures import spread
from dataset_pipeline.masks import encode_mask
from dataset_pipeline.sam2_premasks.backends import PredictedMask, PremaskBackend, Prompt
from dataset_pipeline.store import DatasetStore, join_key
from dataset_pipeline.taxonomy import Taxonomy

PREMASK_COLUMNS: tuple[str, ...] = (
    "premask_id",
    "image_id",
    "class_id",
    "height",
    "width",
    "rle",
    "score",
    "prompt_type",
    "backend",
    "model_version",
    "seconds",
    "rejected",
)
DEFAULT_SCORE_THRESHOLD = 0.7

__all__ = [
    "PREMASK_COLUMNS",
    "PredictedMask",
    "PremaskBackend",
    "PremaskRun",
    "Prompt",
    "PromptError",
    "class_counts",
    "premask_batch",
    "premasks_key",
    "read_prompts",
]


class PromptError(ValueError):
    """The upload's prompts file is malformed; the message names file, row and column."""


def premasks_key(batch: str) -> str:
    """Store key of a batch's pre-masks table."""
    return join_key("tables", "premasks", f"{check_batch_name(batch)}.parquet")


def read_prompts(
    store: DatasetStore, batch: str, captures: pd.DataFrame, taxonomy: Taxonomy
) -> dict[str, list[Prompt]] | None:
    """The batch's prompts per image id, or None when the upload has no prompts file.

    Rows of quarantined images are skipped; a row naming a file the upload does not list,
    an unknown class, or an invalid box or point raises :class:`PromptError`.
    """
    key = join_key(upload_prefix(batch), PROMPTS_FILE)
    if not store.exists(key):
        return None
    source = store.url(key)
    try:
        frame = pd.read_csv(io.BytesIO(store.read_bytes(key)), dtype={"image_file": str, "class_name": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise PromptError(f"{source}: not a readable CSV file ({exc})") from None
    if "image_file" not in frame.columns:
        raise PromptError(f"{source}: missing required column 'image_file'")
    has_box = all(c in frame.columns for c in ("x0", "y0", "x1", "y1"))
    has_point = all(c in frame.columns for c in ("point_x", "point_y"))
    if not (has_box or has_point):
        raise PromptError(f"{source}: needs box columns x0, y0, x1, y1 and/or point columns point_x, point_y")
    prefix = upload_prefix(batch) + "/"
    by_file = {uri[len(prefix) :]: row for uri, row in zip(captures.uri, captures.itertuples(), strict=True)}
    manifest_files = _manifest_files(store, batch)
    prompts: dict[str, list[Prompt]] = {}
    for index, row in enumerate(frame.itertuples(index=False)):
        where = f"{source}: row {index + 2}"
        image_file = row.image_file
        if image_file not in by_file:
            if image_file in manifest_files:
                continue  # the image was quarantined
            raise PromptError(f"{where}, column 'image_file': {image_file!r} is not in the batch's manifest")
        capture = by_file[image_file]
        class_id = None
        class_name = getattr(row, "class_name", None)
        if isinstance(class_name, str) and class_name.strip():
            try:
                class_id = taxonomy.by_name(class_name.strip()).id
            except KeyError as exc:
                raise PromptError(f"{where}, column 'class_name': {exc.args[0]}") from None
        box = _box(row, capture.width, capture.height, where) if has_box else None
        point = _point(row, capture.width, capture.height, where) if has_point else None
        if box is None and point is None:
            raise PromptError(f"{where}: neither a box nor a point")
        prompts.setdefault(capture.image_id, []).append(Prompt(class_id=class_id, box=box, point=point))
    return prompts


def _manifest_files(store: DatasetStore, batch: str) -> set[str]:
    from dataset_pipeline.captures import MANIFEST_FILE, read_manifest

    key = join_key(upload_prefix(batch), MANIFEST_FILE)
    return set(read_manifest(store.read_bytes(key), store.url(key))["image_file"])


def _box(row, width: int, height: int, where: str) -> tuple[float, float, float, float] | None:
    values = [getattr(row, c) for c in ("x0", "y0", "x1", "y1")]
    if all(pd.isna(v) for v in values):
        return None
    try:
        x0, y0, x1, y1 = (float(v) for v in values)
    except (TypeError, ValueError):
        raise PromptError(f"{where}, columns x0..y1: not numbers {values}") from None
    if not all(np.isfinite([x0, y0, x1, y1])):
        raise PromptError(f"{where}, columns x0..y1: not finite {values}")
    x0, x1 = max(0.0, x0), min(float(width), x1)
    y0, y1 = max(0.0, y0), min(float(height), y1)
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise PromptError(f"{where}, columns x0..y1: box {values} is empty inside the {width}x{height} image")
    return x0, y0, x1, y1


def _point(row, width: int, height: int, where: str) -> tuple[float, float] | None:
    x, y = row.point_x, row.point_y
    if pd.isna(x) and pd.isna(y):
        return None
    try:
        x, y = float(x), float(y)
    except (TypeError, ValueError):
        raise PromptError(f"{where}, columns point_x, point_y: not numbers ({x!r}, {y!r})") from None
    if not (np.isfinite(x) and np.isfinite(y) and 0 <= x < width and 0 <= y < height):
        raise PromptError(
            f"{where}, columns point_x, point_y: ({x}, {y}) is outside the {width}x{height} image"
        )
    return x, y


@dataclass
class PremaskRun:
    """What :func:`premask_batch` made."""

    table: pd.DataFrame
    images: int
    prompted_images: int
    failed_prompts: int
    seconds: float
    previews: list[tuple[str, np.ndarray, list[PredictedMask]]] = field(default_factory=list)
    prompted_without_kept: list[str] = field(default_factory=list)

    @property
    def masks(self) -> int:
        return len(self.table)

    @property
    def kept_share(self) -> float:
        return float((~self.table.rejected).mean()) if len(self.table) else 0.0


def iter_images(store: DatasetStore, captures: pd.DataFrame) -> Iterator[tuple[str, np.ndarray]]:
    """(image_id, RGB array) of each capture, decoded from the store."""
    for row in captures.itertuples():
        yield row.image_id, decode_image(store.read_bytes(row.uri), row.uri).rgb


def premask_batch(
    store: DatasetStore,
    batch: str,
    backend: PremaskBackend,
    *,
    taxonomy: Taxonomy,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    image_batch_size: int = 4,
    previews: int = 6,
) -> PremaskRun:
    """Pre-mask every captured image of ``batch`` with ``backend``. Reads only; returns the table."""
    captures = store.read_parquet(captures_key(batch))
    prompts = read_prompts(store, batch, captures, taxonomy) or {}
    rows: list[dict[str, object]] = []
    kept_previews: list[tuple[str, np.ndarray, list[PredictedMask]]] = []
    preview_ids = {captures.image_id.iloc[i] for i in spread(len(captures), previews)}
    failed = 0
    prompted_without_kept: list[str] = []
    started = time.perf_counter()
    images = iter_images(store, captures)
    while True:
        chunk = [item for _, item in zip(range(image_batch_size), images, strict=False)]
        if not chunk:
            break
        chunk_started = time.perf_counter()
        prompted = [(i, img) for i, img in chunk if prompts.get(i)]
        predictions: dict[str, list[PredictedMask]] = {}
        if prompted:
            outputs = backend.predict([img for _, img in prompted], [prompts[i] for i, _ in prompted])
            predictions.update({i: out for (i, _), out in zip(prompted, outputs, strict=True)})
        for image_id, image in chunk:
            if image_id not in predictions:
                predictions[image_id] = backend.generate(image)
        seconds_per_image = (time.perf_counter() - chunk_started) / len(chunk)
        for image_id, image in chunk:
            made = [m for m in predictions[image_id] if m.mask.any()]
            failed += len(predictions[image_id]) - len(made)
            if image_id in prompts and not any(m.score >= score_threshold for m in made):
                prompted_without_kept.append(image_id)
            for number, predicted in enumerate(made):
                rows.append(
                    {
                        "premask_id": f"{image_id}#p{number}",
                        "image_id": image_id,
                        "class_id": predicted.class_id,
                        "height": int(image.shape[0]),
                        "width": int(image.shape[1]),
                        "rle": encode_mask(predicted.mask),
                        "score": float(predicted.score),
                        "prompt_type": predicted.prompt_type,
                        "backend": backend.name,
                        "model_version": backend.model_version,
                        "seconds": seconds_per_image / max(1, len(made)),
                        "rejected": bool(predicted.score < score_threshold),
                    }
                )
            if image_id in preview_ids:
                kept_previews.append((image_id, image, made))
    table = pd.DataFrame(rows, columns=list(PREMASK_COLUMNS)).astype(
        {"class_id": "Int64", "height": "int64", "width": "int64", "score": "float64", "rejected": "bool"}
    )
    return PremaskRun(
        table=table,
        images=len(captures),
        prompted_images=sum(1 for i in captures.image_id if prompts.get(i)),
        failed_prompts=failed,
        seconds=time.perf_counter() - started,
        previews=kept_previews,
        prompted_without_kept=prompted_without_kept,
    )


def class_counts(premasks: pd.DataFrame, taxonomy: Taxonomy) -> pd.DataFrame:
    """Pre-masks per class: total, kept, rejected, mean score (rows in taxonomy order; 'unclassed' last)."""
    names = premasks.class_id.map(lambda c: taxonomy.by_id(int(c)).name if pd.notna(c) else "unclassed")
    table = (
        premasks.assign(class_name=names)
        .groupby("class_name")
        .agg(masks=("premask_id", "size"), rejected=("rejected", "sum"), mean_score=("score", "mean"))
    )
    table["kept"] = table.masks - table.rejected
    order = [n for n in [*taxonomy.names, "unclassed"] if n in table.index]
    return (
        table.loc[order, ["masks", "kept", "rejected", "mean_score"]].round({"mean_score": 3}).reset_index()
    )

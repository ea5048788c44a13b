"""The upload's ``prompts.csv``: a detector's boxes and points, with the class it saw, per image.

A row naming a quarantined image is skipped; one naming a file the manifest does not list, an
unknown class, or a box or point that is not inside the image refuses the file (the message
names the file, the row and the column): a pre-mask from a wrong prompt would mislead the
annotator who starts from it.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from dataset_pipeline import layout, schemas
from dataset_pipeline.raw_captures import read_manifest
from dataset_pipeline.sam2_premasks.backends import Prompt
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.taxonomy import Taxonomy


class PromptError(ValueError):
    """The upload's prompts file is malformed; the message names file, row and column."""


def read_prompts(
    store: DatasetStore, batch: str, captures: pd.DataFrame, taxonomy: Taxonomy
) -> dict[str, list[Prompt]] | None:
    """The batch's prompts per image id, or None when the upload has no prompts file.

    Rows of quarantined images are skipped; a row naming a file the upload does not list,
    an unknown class, or an invalid box or point raises :class:`PromptError`.
    """
    key = layout.prompts_key(batch)
    if not store.exists(key):
        return None
    source = store.url(key)
    try:
        frame = pd.read_csv(io.BytesIO(store.read_bytes(key)), dtype={"image_file": str, "class_name": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise PromptError(f"{source}: not a readable CSV file ({exc})") from None
    if "image_file" not in frame.columns:
        raise PromptError(f"{source}: missing required column 'image_file'")
    has_box = all(c in frame.columns for c in schemas.PROMPT_BOX_COLUMNS)
    has_point = all(c in frame.columns for c in schemas.PROMPT_POINT_COLUMNS)
    if not (has_box or has_point):
        raise PromptError(f"{source}: needs box columns x0, y0, x1, y1 and/or point columns point_x, point_y")
    by_file = {
        layout.upload_relative(batch, uri): row
        for uri, row in zip(captures.uri, captures.itertuples(), strict=True)
    }
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
    key = layout.manifest_key(batch)
    return set(read_manifest(store.read_bytes(key), store.url(key))["image_file"])


def _box(row, width: int, height: int, where: str) -> tuple[float, float, float, float] | None:
    values = [getattr(row, c) for c in schemas.PROMPT_BOX_COLUMNS]
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

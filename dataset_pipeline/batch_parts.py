"""A corpus-wide stage's rows, batch by batch: each batch's part is made once and kept while the
inputs it was made from are unchanged.

A batch's part lives under ``tables/<stage>/batches/<batch>/`` (``layout.stage_part_key``); its
``digest.json``, written last, holds the SHA-256 of those inputs (the batch's tables' bytes and
the settings that shape its rows) and the part's small figures. A rebuild hashes the inputs (a
read of each batch's table files, no decoding) and makes only the parts whose digest changed, so
a new batch costs its own rows, and the stage holds one batch in memory at a time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from dataset_pipeline import layout
from dataset_pipeline.store import DatasetStore


def input_digest(store: DatasetStore, keys: list[str], *settings: object) -> str:
    """The SHA-256 over the bytes of ``keys`` (absent ones count as absent) and ``settings``."""
    digest = hashlib.sha256()
    for key in keys:
        data = store.read_bytes(key) if store.exists(key) else b""
        digest.update(f"{key}:{len(data)}:".encode() + hashlib.sha256(data).digest())
    digest.update(json.dumps(list(settings), sort_keys=True, default=str).encode())
    return digest.hexdigest()


def kept_part(store: DatasetStore, stage: str, batch: str, digest: str) -> dict | None:
    """The figures of the batch's part when it was made from inputs of ``digest``, else None."""
    key = layout.stage_part_key(stage, batch, layout.STAGE_PART_DIGEST)
    if not store.exists(key):
        return None
    sealed = json.loads(store.read_bytes(key))
    return sealed["figures"] if sealed.get("digest") == digest else None


def seal_part(store: DatasetStore, stage: str, batch: str, digest: str, figures: dict) -> dict:
    """Vouch for the batch's part (written after its tables): it was made from ``digest``."""
    store.sync()
    document = {"digest": digest, "figures": figures}
    store.write_bytes(
        layout.stage_part_key(stage, batch, layout.STAGE_PART_DIGEST),
        json.dumps(document, default=str).encode(),
    )
    return figures


def update_parts(
    store: DatasetStore,
    stage: str,
    batches: list[str],
    inputs: Callable[[str], list[str]],
    settings: tuple,
    make: Callable[[str], dict],
) -> tuple[list[dict], list[str]]:
    """Every batch's part of ``stage``: kept where the digest of its ``inputs(batch)`` and
    ``settings`` is the one it was sealed with, else ``make(batch)`` (which writes the part's
    tables and returns its figures) and sealed. Returns each batch's figures, in order, and the
    batches made."""
    figures, made = [], []
    for batch in batches:
        digest = input_digest(store, inputs(batch), *settings)
        kept = kept_part(store, stage, batch, digest)
        if kept is None:
            kept = seal_part(store, stage, batch, digest, make(batch))
            made.append(batch)
        figures.append(kept)
    return figures, made

"""A corpus-wide stage's rows, batch by batch: each batch's part is made once and kept while the
inputs it was made from are unchanged.

A batch's part lives under ``tables/<stage>/batches/<batch>/`` (``layout.stage_part_key``); its
``digest.json``, written last, holds the SHA-256 of those inputs (the batch's tables' bytes and
the settings that shape its rows) and the part's small figures. A rebuild hashes the inputs (a
read of each batch's table files, no decoding) and makes only the parts whose digest changed, so
a new batch costs its own rows, and the stage holds one batch in memory at a time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import os
import sys
from collections.abc import Callable

from dataset_pipeline import layout
from dataset_pipeline.store import DatasetStore

#: glibc's mallopt parameter of the size from which an allocation gets its own mapping.
_M_MMAP_THRESHOLD = -3
_HEAP_BOUNDED = False


def bound_heap_growth(threshold: int = 64 * 1024) -> None:
    """Have glibc give every allocation of ``threshold`` bytes or more its own mapping, returned
    to the system when freed (once per process; not on other C libraries, nor where
    ``MALLOC_MMAP_THRESHOLD_`` is set).

    glibc raises that threshold, up to 32 MiB, each time it frees such a mapping, so a stage
    that makes and drops arrays of a few hundred KiB a batch (NumPy columns, Parquet pages)
    soon takes them from its heap, where freed space stays resident: dataset_splits rose
    26 MiB from 10k to 40k images with it, 15 MiB without. The cost is a page fault per page
    of each new large array, small beside the work done on it.
    """
    global _HEAP_BOUNDED
    if _HEAP_BOUNDED or not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return
    _HEAP_BOUNDED = True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, threshold)
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): its allocator's own way
        pass


def return_freed_heap() -> None:
    """Give the heap's freed pages back to the system (glibc's ``malloc_trim``; nothing elsewhere).

    Blocks under the mmap threshold (:func:`bound_heap_growth`) live in the heap and stay
    resident once freed; the arrays a stage makes next are mappings of their own and do not
    reuse that space. A stage that has read many small parts into arrays and let the parts go
    calls this before its big arrays: dataset_splits gave back 10 MiB at 100k images so.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


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
    bound_heap_growth()
    figures, made = [], []
    for batch in batches:
        digest = input_digest(store, inputs(batch), *settings)
        kept = kept_part(store, stage, batch, digest)
        if kept is None:
            kept = seal_part(store, stage, batch, digest, make(batch))
            made.append(batch)
        figures.append(kept)
    return figures, made

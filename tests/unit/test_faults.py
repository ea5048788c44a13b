"""Faults mid-run: SIGKILL during writes, idempotent re-runs (an S3 outage during a run and planted
secrets: services/test_s3.py).

Counts for the closing figures: each test names what it injects; bytes lost must be 0.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dataset_pipeline import dataset_release as release
from dataset_pipeline import layout
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.taxonomy import load_taxonomy
from tests.conftest import demo_corpus

ROOT = Path(__file__).resolve().parents[2]


def _checksums(store: DatasetStore, prefix: str) -> dict[str, str]:
    return {k: hashlib.sha256(store.read_bytes(k)).hexdigest() for k in store.list(prefix, recursive=True)}


def _spawn(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT)


def _wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the condition was not reached")
        time.sleep(0.02)


def test_sigkill_while_a_table_is_written_leaves_the_old_or_the_new_file_never_a_part(local_store):
    """5 kills of a process rewriting one 8 MiB file: the key always holds a complete version."""
    versions = {hashlib.sha256(bytes([v]) * (8 * 2**20)).hexdigest() for v in range(256)}
    key = "tables/captures/killed.parquet"
    for kill in range(5):
        child = _spawn(
            f"""
            from dataset_pipeline.store import DatasetStore
            store = DatasetStore({local_store.root!r})
            for round in range(10_000):
                store.write_bytes({key!r}, bytes([round % 256]) * (8 * 2**20))
            """
        )
        time.sleep(0.4 + 0.15 * kill)
        child.send_signal(signal.SIGKILL)
        child.wait()
        if local_store.exists(key):
            assert hashlib.sha256(local_store.read_bytes(key)).hexdigest() in versions
        assert local_store.list("tables/captures") in ([], [key])  # a leftover .tmp-*.part is never listed


def test_sigkill_during_a_release_then_a_rerun_completes_and_raw_files_are_untouched(tmp_path):
    store = DatasetStore(str(tmp_path / "store"))
    images, annotations, splits = demo_corpus(store, "kill-b1", 16)
    raw_before = _checksums(store, "incoming")
    for name, frame in (("images", images), ("annotations", annotations), ("splits", splits)):
        store.write_parquet(f"tables/fault/{name}.parquet", frame)
    content = release.ReleaseContent(store, load_taxonomy(), images, annotations, splits)
    formats = [f for f in release.DEFAULT_FORMATS if f != "rlds"]  # no second environment in the unit lane
    version = release.release_version(content, formats)
    child = _spawn(
        f"""
        from dataset_pipeline import dataset_release as release
        from dataset_pipeline.store import DatasetStore
        from dataset_pipeline.taxonomy import load_taxonomy
        store = DatasetStore({store.root!r})
        content = release.ReleaseContent(store, load_taxonomy(), *(store.read_parquet(f"tables/fault/{{n}}.parquet")
                                         for n in ("images", "annotations", "splits")))
        release.write_exports(content, {version!r}, {formats!r})
        """
    )
    folder = store.path(f"releases/{version}")
    _wait_for(lambda: os.path.isdir(os.path.join(folder, "labels")))  # images done, formats under way
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not store.exists(f"releases/{version}/exports.json")
    assert release.list_releases(store) == []  # never visible as complete
    outcome = release.write_exports(content, version, formats)  # the re-run
    assert not outcome.reused
    assert {f: release.validate_format(content, version, f) for f in formats} == {f: [] for f in formats}
    assert _checksums(store, "incoming") == raw_before


CHILD_CONTENT = """
from dataset_pipeline import dataset_release as release
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.taxonomy import load_taxonomy
store = DatasetStore({root!r})
content = release.ReleaseContent(store, load_taxonomy(), *(store.read_parquet(f"tables/fault/{{n}}.parquet")
                                 for n in ("images", "annotations", "splits")))
"""


def test_a_shard_killed_mid_write_is_made_again_and_two_releases_at_once_finish_whole(tmp_path):
    """A shard's step SIGKILLed while it writes leaves no part of the index, so the retry makes the
    whole shard again; the release then has every shard once, no file doubled or left half. Two
    processes releasing the same version at the same moment both finish, and what they leave reads
    back whole (each file is written by an atomic rename; the same inputs give the same bytes)."""
    store = DatasetStore(str(tmp_path / "store"))
    images, annotations, splits = demo_corpus(store, "kill-shard", 24)
    for name, frame in (("images", images), ("annotations", annotations), ("splits", splits)):
        store.write_parquet(f"tables/fault/{name}.parquet", frame)
    content = release.ReleaseContent(store, load_taxonomy(), images, annotations, splits)
    formats = [f for f in release.DEFAULT_FORMATS if f != "rlds"]
    version = release.release_version(content, formats)
    split, shard = max(release.release_shards(content), key=lambda s: len(dict(content.shards(s[0]))[s[1]]))
    child = _spawn(
        CHILD_CONTENT.format(root=store.root)
        + f"release.export_shard(content, {version!r}, {formats!r}, {split!r}, {shard!r}, threads=1)\n"
    )
    masks = store.path(f"releases/{version}/masks/{split}")
    _wait_for(lambda: os.path.isdir(masks) and len(os.listdir(masks)) >= 2)  # the shard is half made
    child.send_signal(signal.SIGKILL)
    child.wait()
    part = layout.release_part_key(version, split, shard)
    assert not store.exists(part)
    with pytest.raises(release.ReleaseError, match=f"shard {split}/{shard} has not been exported"):
        release.assemble_exports(content, version, formats)
    outcome = release.write_exports(content, version, formats)  # the retry of every step
    assert store.exists(part) and not outcome.reused
    index = store.read_parquet(f"releases/{version}/index.parquet")
    on_disk = set(release.release_folder(store, version).list()) - {"index.parquet", "exports.json"}
    assert not index.file.duplicated().any() and set(index.file) == on_disk
    assert not [n for _, _, files in os.walk(store.path("releases")) for n in files if n.endswith(".part")]
    assert {f: release.validate_format(content, version, f) for f in formats} == {f: [] for f in formats}

    other = release.release_version(content, [*formats[:-1]])  # another version, released twice at once
    both = [
        _spawn(
            CHILD_CONTENT.format(root=store.root)
            + f"release.write_exports(content, {other!r}, {formats[:-1]!r})\n"
        )
        for _ in range(2)
    ]
    assert [c.wait(timeout=300) for c in both] == [0, 0]
    index = store.read_parquet(f"releases/{other}/index.parquet")
    on_disk = set(release.release_folder(store, other).list()) - {"index.parquet", "exports.json"}
    assert not index.file.duplicated().any() and set(index.file) == on_disk
    assert {f: release.validate_format(content, other, f) for f in formats[:-1]} == {
        f: [] for f in formats[:-1]
    }

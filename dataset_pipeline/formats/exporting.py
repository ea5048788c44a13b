"""What every exporter provides (:class:`Exporter`), and where it writes (:class:`ReleaseFolder`).

Every ``formats/<format>/exporter.py`` is an :class:`Exporter`: ``export`` writes the format's
files into the release folder, ``validate`` reads them back with the format's own reader where
one is installed (pycocotools for COCO, h5py for HDF5, PIL for PNG, pyarrow for LeRobot's
Parquet) and compares them with the corpus, so a problem names the file, the record and the
field. A format with one file per image is a :class:`PerImageExporter`: the release writes all
such formats in one pass over the images, so each image's masks are decoded once.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from dataset_pipeline.layout import join_key
from dataset_pipeline.store import DatasetStore

if TYPE_CHECKING:
    import pandas as pd

    from dataset_pipeline.formats.release_content import ImageRow, ReleaseContent


class Exporter(Protocol):
    """A release format."""

    #: The name the release settings use.
    NAME: str

    def export(self, content: ReleaseContent, out: ReleaseFolder) -> list[str]:
        """Write the format's files; returns them, relative to the release folder."""
        ...

    def validate(self, content: ReleaseContent, out: ReleaseFolder) -> list[str]:
        """Read the files back and compare them with ``content``; returns the problems found."""
        ...


@runtime_checkable
class PerImageExporter(Exporter, Protocol):
    """A format with a file per image (``export`` is then ``export_shared`` plus every image)."""

    def export_shared(self, content: ReleaseContent, out: ReleaseFolder) -> list[str]:
        """The format's files that are not per image (a palette, ``data.yaml``)."""
        ...

    def export_image(self, content: ReleaseContent, out: ReleaseFolder, row: ImageRow) -> str:
        """The file of one image; returns it, relative to the release folder."""
        ...


class ReusableFiles:
    """The files of an earlier release by (unit, format), with the digest of the inputs they
    were made from (its ``index.parquet``): a unit whose digest is unchanged is linked, not made."""

    def __init__(self, prefix: str, rows: Iterable[tuple[str, str, str, str, int]]) -> None:
        self.prefix = prefix
        self._files: dict[tuple[str, str], tuple[str, list[tuple[str, int]]]] = {}
        for unit, fmt, digest, relative, size in rows:
            if digest:  # files made from the whole release (COCO, LeRobot) carry none: never reused
                self._files.setdefault((unit, fmt), (digest, []))[1].append((relative, int(size)))

    @classmethod
    def of_release(cls, store: DatasetStore, prefix: str) -> ReusableFiles | None:
        """The reusable files of the release under ``prefix`` (None when it has no index)."""
        from dataset_pipeline.layout import RELEASE_INDEX_FILE

        key = join_key(prefix, RELEASE_INDEX_FILE)
        if not store.exists(key):
            return None
        table = store.read_table(key, ["unit", "format", "digest", "file", "bytes"])
        columns = [table.column(c).to_pylist() for c in ("unit", "format", "digest", "file", "bytes")]
        return cls(prefix, zip(*columns, strict=True))

    def files(self, unit: str, fmt: str, digest: str) -> list[tuple[str, int]]:
        """The earlier (file, bytes) of ``unit`` in ``fmt`` when made from the same inputs, else []."""
        found = self._files.get((unit, fmt))
        return list(found[1]) if found and found[0] == digest else []


@runtime_checkable
class ShardedExporter(Exporter, Protocol):
    """A format whose bulk is written shard by shard (:meth:`ReleaseContent.shards`), each shard in
    a step of its own; ``export`` then assembles the shards (and writes any not written yet)."""

    def export_shard(
        self, content: ReleaseContent, out: ReleaseFolder, split: str, name: str, rows: list
    ) -> list[str]:
        """The files of one shard; returns them, relative to the release folder."""
        ...


@runtime_checkable
class ShardCheckedExporter(Exporter, Protocol):
    """A format whose files are nearly all per shard (per image, or a shard's file): its reload
    check runs shard by shard, each part in a step beside the exports as soon as its shard is
    written, so the checks need not wait for the whole release (``validate`` is
    :func:`validate_by_shard`: ``validate_release`` then every shard's ``validate_shard``)."""

    def validate_shard(
        self, content: ReleaseContent, out: ReleaseFolder, split: str, shard: str, rows: list
    ) -> list[str]:
        """The problems of one shard's files (they are final once its part of the index exists)."""
        ...

    def validate_release(self, content: ReleaseContent, out: ReleaseFolder) -> list[str]:
        """The problems of the files made from the whole release (``data.yaml``, the split files)."""
        ...


def validate_by_shard(
    validate_release: Callable[[ReleaseContent, ReleaseFolder], list[str]],
    validate_shard: Callable[[ReleaseContent, ReleaseFolder, str, str, list], list[str]],
    content: ReleaseContent,
    out: ReleaseFolder,
) -> list[str]:
    """A shard-checked format's whole check in one call: the release's own files, then every shard."""
    problems = validate_release(content, out)
    for split in content.splits:
        for shard, rows in content.shards(split):
            problems += validate_shard(content, out, split, shard, rows)
    return problems


@dataclass
class ReleaseFolder:
    """The release's folder in the store: ``releases/<version>/``; keys are relative to it.

    It also keeps the release's index (what each file holds and the digest of its inputs) and,
    with ``reusable`` (an earlier release's), links the files of unchanged units instead of
    making them again (:meth:`reuse`)."""

    store: DatasetStore
    prefix: str
    reusable: ReusableFiles | None = None
    #: Validators leave out the files :meth:`shared` names (an incremental release's checks).
    skip_shared: bool = False
    #: The store key of the index naming the shared files: a shard's or a step's part of it, read
    #: by a check beside the exports; None: the release's own ``index.parquet``.
    shared_from: str | None = None

    def __post_init__(self) -> None:
        self._shared: frozenset[str] | None = None
        self.skipped = 0  # the files :meth:`shared` told a validator to leave out
        self._index: dict[str, dict] = {}
        self._sizes: dict[str, int] = {}  # bytes of the files this process wrote
        self._lock = threading.Lock()

    def record(
        self, unit: str, fmt: str, digest: str, relative: str, size: int | None = None, source: str = ""
    ) -> str:
        """Enter a file into the release's index (thread-safe: the per-image pass is threaded);
        ``digest`` "" = made from the whole release, never reused. A file entered twice keeps
        its first entry (a shard's exporter enters its files before the release enters the rest);
        ``source``: the earlier release's file it was linked from."""
        if size is None:
            size = self._sizes.get(relative)
            if size is None:
                size = self.store.size(self.key(relative))
        row = {
            "unit": unit,
            "format": fmt,
            "digest": digest,
            "file": relative,
            "bytes": size,
            "reused": bool(source),
            "source": source,
        }
        with self._lock:
            self._index.setdefault(relative, row)
        return relative

    def recorded(self, relative: str) -> bool:
        with self._lock:
            return relative in self._index

    def reuse(self, unit: str, fmt: str, digest: str, names: list[str] | None = None) -> list[str]:
        """Link the earlier release's files of ``unit`` in ``fmt`` into this one when they were
        made from the same inputs (``digest``), under ``names`` (default: the same relative paths;
        an episode's number may move). Returns the files linked, [] when there is nothing to reuse."""
        if self.reusable is None:
            return []
        earlier = self.reusable.files(unit, fmt, digest)
        if not earlier or (names is not None and len(names) != len(earlier)):
            return []
        names = names if names is not None else [old for old, _ in earlier]
        for (old, size), new in zip(earlier, names, strict=True):
            self.store.link(join_key(self.reusable.prefix, old), self.key(new))
            self.record(unit, fmt, digest, new, size, source=old)
        return names

    def shared_files(self) -> frozenset[str]:
        """This release's files linked from an earlier complete release, made
        from the same inputs (its written index's ``reused`` rows; none before the index is written).

        That release's checks read those very bytes back (a hard link or a server-side copy of
        a file made read-only once complete), from the same inputs (equal digest): reading them
        again proves nothing new, and an incremental release's checks would read the whole
        corpus. A file made from the whole release (COCO, the HDF5 split files) is never shared."""
        if self._shared is None:
            from dataset_pipeline.layout import RELEASE_INDEX_FILE

            key = self.shared_from or self.key(RELEASE_INDEX_FILE)
            self._shared = frozenset()
            if self.store.exists(key):
                table = self.store.read_table(key, ["file", "reused"])
                files, reused = (table.column(c).to_pylist() for c in ("file", "reused"))
                self._shared = frozenset(f for f, r in zip(files, reused, strict=True) if r)
        return self._shared

    def shared(self, relative: str) -> bool:
        """Whether a validator leaves ``relative`` out: ``skip_shared`` and one of :meth:`shared_files`."""
        if self.skip_shared and relative in self.shared_files():
            self.skipped += 1
            return True
        return False

    def read_earlier(self, relative: str) -> bytes | None:
        """The bytes of ``relative`` in the earlier release (``reusable``), None when there is none:
        a format that appends to its earlier layout (LeRobot's episode order) reads it here."""
        if self.reusable is None:
            return None
        key = join_key(self.reusable.prefix, relative)
        return self.store.read_bytes(key) if self.store.exists(key) else None

    def add_rows(self, rows: Iterable[dict]) -> None:
        """Enter index rows made elsewhere (the shards' steps) before the rest of the release."""
        with self._lock:
            for row in rows:
                self._index.setdefault(row["file"], dict(row))

    def index_rows(self) -> list[dict]:
        """The release's index (schemas.RELEASE_INDEX rows), by file."""
        with self._lock:
            return [dict(self._index[k]) for k in sorted(self._index)]

    def write_index(self, key: str | None = None) -> str:
        """``index.parquet`` (or the store key ``key``: a shard's part of it), written with pyarrow
        alone (the export path loads no pandas)."""
        import io

        import pyarrow.parquet as pq

        from dataset_pipeline.formats.arrow import table_of_columns
        from dataset_pipeline.layout import RELEASE_INDEX_FILE
        from dataset_pipeline.schemas import RELEASE_INDEX

        rows = self.index_rows()
        types = {c: RELEASE_INDEX.dtypes.get(c, "string") for c in RELEASE_INDEX.columns}
        table = table_of_columns({c: [r[c] for r in rows] for c in RELEASE_INDEX.columns}, types)
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        if key is not None:
            return self.store.write_bytes(key, buffer.getvalue())
        return self.write_bytes(RELEASE_INDEX_FILE, buffer.getvalue())

    def key(self, relative: str) -> str:
        return join_key(self.prefix, relative)

    def write_bytes(self, relative: str, data: bytes) -> str:
        """Atomic, without a per-file fsync: the release's manifests are written after ``store.sync()``."""
        self.store.write_bytes(self.key(relative), data, durable=False)
        with self._lock:
            self._sizes[relative] = len(data)
        return relative

    def write_text(self, relative: str, text: str) -> str:
        return self.write_bytes(relative, text.encode("utf-8"))

    def write_parquet(self, relative: str, frame: pd.DataFrame) -> str:
        self.store.write_parquet(self.key(relative), frame, durable=False)
        return relative

    @contextlib.contextmanager
    def new_local_file(self, relative: str) -> Iterator[str]:
        """A temporary local path to write ``relative`` at (for a library that wants a path,
        h5py, or a file written in pieces); it is put into the release atomically when the block
        ends without an error, and removed either way."""
        import tempfile

        handle, path = tempfile.mkstemp(suffix=posixpath.splitext(relative)[1])
        os.close(handle)
        try:
            yield path
            self.store.put_file(self.key(relative), path)
            with self._lock:
                self._sizes[relative] = os.path.getsize(path)
        finally:
            os.unlink(path)

    def read_bytes(self, relative: str) -> bytes:
        return self.store.read_bytes(self.key(relative))

    def exists(self, relative: str) -> bool:
        return self.store.exists(self.key(relative))

    def list(self, relative: str = "") -> list[str]:
        base = self.key(relative) if relative else self.prefix
        return [k[len(self.prefix) + 1 :] for k in self.store.list(base, recursive=True)]

    @contextlib.contextmanager
    def local_folder(self, relative: str) -> Iterator[str]:
        """A local directory holding the folder ``relative`` of the release with its layout (for
        files that point at each other by relative path: an HDF5 split and its shards): the
        folder itself on a local store, else a temporary download removed afterwards."""
        if self.store.is_local:
            yield self.store.path(self.key(relative))
            return
        import shutil
        import tempfile

        root = tempfile.mkdtemp()
        try:
            for name in self.list(relative):
                target = os.path.join(root, name)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "wb") as handle:
                    handle.write(self.read_bytes(name))
            yield os.path.join(root, relative)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    @contextlib.contextmanager
    def local_copy(self, relative: str) -> Iterator[str]:
        """A local path to read the file with a library that wants one (h5py, pycocotools):
        the file itself on a local store, else a temporary download removed afterwards."""
        if self.store.is_local:
            yield self.store.path(self.key(relative))
            return
        import tempfile

        handle = tempfile.NamedTemporaryFile(suffix=posixpath.splitext(relative)[1], delete=False)
        try:
            with handle:
                handle.write(self.read_bytes(relative))
            yield handle.name
        finally:
            os.unlink(handle.name)


def read_index_rows(store: DatasetStore, key: str) -> list[dict]:
    """The rows of an index file (schemas.RELEASE_INDEX), without pandas."""
    table = store.read_table(key)
    columns = {c: table.column(c).to_pylist() for c in table.column_names}
    return [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]

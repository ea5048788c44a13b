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
from collections.abc import Iterator
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


@dataclass
class ReleaseFolder:
    """The release's folder in the store: ``releases/<version>/``; keys are relative to it."""

    store: DatasetStore
    prefix: str

    def key(self, relative: str) -> str:
        return join_key(self.prefix, relative)

    def write_bytes(self, relative: str, data: bytes) -> str:
        """Atomic, without a per-file fsync: the release's manifests are written after ``store.sync()``."""
        self.store.write_bytes(self.key(relative), data, durable=False)
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

"""The dataset store: one fsspec root (a local folder or ``s3://bucket/prefix``).

Every stage reads and writes through this class, so three rules hold everywhere:

* a key is a relative POSIX path below the root; ``..``, absolute paths, URLs and
  backslashes are refused (:class:`StoreKeyError`), so no input can reach outside;
* a write is atomic: a local file is written under a temporary name in the same
  folder, flushed and renamed over the target; an S3 object only becomes visible
  when its PUT (or multipart upload) completes. A killed run leaves no half file;
* raw uploads under ``incoming/`` are never modified: ordinary writes there are
  refused, and :meth:`DatasetStore.put_upload` only creates files that do not exist.

Which keys exist is :mod:`dataset_pipeline.layout`'s business (and docs/store-layout.md);
so is the key grammar, which this class applies to every key it is given.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import os
import posixpath
import shutil
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataset_pipeline.layout import RAW_PREFIXES, StoreKeyError, join_key, normalize_key

__all__ = [
    "DatasetStore",
    "StoreConfig",
    "RawUploadError",
    "StoreError",
    "StoreKeyError",
    "join_key",
    "normalize_key",
    "use_system_arrow_pool",
]


class StoreError(RuntimeError):
    """A store operation failed; the message names the key and the store root."""


class RawUploadError(StoreError):
    """A write would modify a raw upload."""


def use_system_arrow_pool() -> None:
    """Have pyarrow allocate from the C allocator in this process (once), unless
    ``ARROW_DEFAULT_MEMORY_POOL`` names another pool. Every table read and write calls it first.

    pyarrow's default pool, mimalloc, keeps its arenas: reading a 3 MB table raised a
    process's resident memory by 58 MiB with it and by 22 MiB with the system pool (a
    1,000-image release export peaked at 228 vs 195 MiB). The pipeline's tables are
    megabytes, read once per step, so the pool's speed does not matter here; every Dagster
    step process reads some, so its memory does.

    Arrow's C++ code reads the variable once, at its first allocation: when pyarrow is not
    loaded yet, setting it covers the Parquet reader's buffers too (16 MiB less at the peak of
    a 1,000-image export); when something loaded pyarrow first (pandas does),
    ``pyarrow.set_memory_pool`` switches what pyarrow's Python-level calls allocate. Done here,
    on first use, rather than when a module is imported: importing changes no process state.
    """
    global _ARROW_POOL_SET
    if _ARROW_POOL_SET:
        return
    if "pyarrow" not in sys.modules:
        os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    import pyarrow

    if pyarrow.default_memory_pool().backend_name != "system" and os.environ.get(
        "ARROW_DEFAULT_MEMORY_POOL"
    ) in (None, "system"):
        pyarrow.set_memory_pool(pyarrow.system_memory_pool())
    _ARROW_POOL_SET = True


_ARROW_POOL_SET = False


def _umask() -> int:
    """The process's umask, read once when first needed: reading it means setting it and setting
    it back, so under a lock (the release writes files from several threads)."""
    global _UMASK
    with _UMASK_LOCK:
        if _UMASK is None:
            _UMASK = os.umask(0)
            os.umask(_UMASK)
        return _UMASK


_UMASK: int | None = None
_UMASK_LOCK = threading.Lock()


#: The environment that configures the store, read alike by the CLI and the code location.
STORE_VARIABLE = "DATASET_PIPELINE_STORE"
ENDPOINT_VARIABLE = "DATASET_PIPELINE_S3_ENDPOINT"
KEY_ID_VARIABLE = "DATASET_PIPELINE_S3_ACCESS_KEY_ID"
SECRET_VARIABLE = "DATASET_PIPELINE_S3_SECRET_ACCESS_KEY"
DEFAULT_ROOT = "data"


@dataclass(frozen=True)
class StoreConfig:
    """Where the store is and how to reach it: a folder, or ``s3://bucket/prefix`` with an optional
    S3-compatible endpoint (MinIO, Ceph, moto) and credentials. Unset credentials leave botocore's
    own chain (AWS_* variables, profiles, instance roles) to find them.

    >>> StoreConfig("s3://robot-data/seg", endpoint_url="http://127.0.0.1:9000").storage_options()
    {'endpoint_url': 'http://127.0.0.1:9000'}
    """

    root_url: str = DEFAULT_ROOT
    endpoint_url: str | None = None
    key: str | None = None
    secret: str | None = None
    region_name: str | None = None
    connect_timeout_s: float | None = None
    max_attempts: int | None = None

    @classmethod
    def from_environment(
        cls, root_url: str | None = None, environ: Mapping[str, str] | None = None
    ) -> StoreConfig:
        """The store the environment names (``root_url``, when given, wins over DATASET_PIPELINE_STORE)."""
        env = os.environ if environ is None else environ
        return cls(
            root_url=root_url or env.get(STORE_VARIABLE) or DEFAULT_ROOT,
            endpoint_url=env.get(ENDPOINT_VARIABLE) or None,
            key=env.get(KEY_ID_VARIABLE) or None,
            secret=env.get(SECRET_VARIABLE) or None,
        )

    @property
    def is_s3(self) -> bool:
        return self.root_url.startswith("s3://")

    def storage_options(self) -> dict[str, Any]:
        """The s3fs options (nothing for a local folder)."""
        if not self.is_s3:
            return {}
        options: dict[str, Any] = {}
        if self.endpoint_url:
            options["endpoint_url"] = self.endpoint_url
        if self.key:
            options["key"] = self.key
        if self.secret:
            options["secret"] = self.secret
        if self.region_name:
            options["client_kwargs"] = {"region_name": self.region_name}
        config: dict[str, Any] = {}
        if self.connect_timeout_s is not None:
            config["connect_timeout"] = self.connect_timeout_s
        if self.max_attempts is not None:
            config["retries"] = {"max_attempts": self.max_attempts}
        if config:
            options["config_kwargs"] = config
        return options

    def open(self) -> DatasetStore:
        return DatasetStore(self.root_url, self.storage_options())


class DatasetStore:
    """Atomic, root-confined file access over fsspec.

    >>> import tempfile
    >>> store = DatasetStore(tempfile.mkdtemp())
    >>> store.write_bytes("tables/x.txt", b"hello")
    'tables/x.txt'
    >>> store.read_bytes("tables/x.txt")
    b'hello'
    """

    #: Parquet tables are decoded this many rows at a time (:meth:`read_table`).
    READ_BATCH_ROWS = 8192

    def __init__(self, root_url: str, storage_options: dict[str, Any] | None = None) -> None:
        import fsspec

        self.storage_options = dict(storage_options or {})
        protocol, _, rest = root_url.partition("://")
        if not rest:
            protocol, rest = "file", str(Path(root_url).expanduser().resolve())
        if protocol == "s3":
            # Listings must be fresh: the upload sensor looks for files that other
            # processes wrote seconds ago.
            self.storage_options.setdefault("use_listings_cache", False)
            self.storage_options.setdefault("skip_instance_cache", True)
        self.protocol = protocol
        self.root = rest.rstrip("/")
        self.root_url = f"{protocol}://{self.root}" if protocol != "file" else self.root
        try:
            self.fs = fsspec.filesystem(protocol, **self.storage_options)
        except (ImportError, ValueError, TypeError) as exc:
            raise StoreError(f"cannot open store {self.root_url!r}: {exc}") from exc
        if protocol == "file":
            os.makedirs(self.root, exist_ok=True)
        #: What a storage backend raises when the store is unreachable or refuses a call: OSError,
        #: and for S3 botocore's own errors (EndpointConnectionError is not an OSError).
        self._errors: tuple[type[BaseException], ...] = (OSError,)
        if protocol == "s3":
            from botocore.exceptions import BotoCoreError, ClientError

            self._errors = (OSError, BotoCoreError, ClientError)

    @property
    def is_local(self) -> bool:
        return self.protocol == "file"

    def __repr__(self) -> str:
        return f"DatasetStore({self.root_url!r})"

    # -- paths ---------------------------------------------------------------------------

    def path(self, key: str) -> str:
        """The filesystem path of ``key`` (without protocol), after validating it."""
        return f"{self.root}/{normalize_key(key)}"

    def url(self, key: str) -> str:
        """The full URL (``s3://...``) or absolute local path of ``key``."""
        path = self.path(key)
        return path if self.is_local else f"{self.protocol}://{path}"

    def key_of(self, path: str) -> str:
        """The key of a filesystem path returned by fsspec (inverse of :meth:`path`)."""
        path = path.split("://", 1)[-1]
        prefix = self.root + "/"
        if not path.startswith(prefix):
            raise StoreKeyError(f"path {path!r} is outside the store root {self.root_url!r}")
        return normalize_key(path[len(prefix) :])

    # -- reading -------------------------------------------------------------------------

    def exists(self, key: str) -> bool:
        try:
            return bool(self.fs.exists(self.path(key)))
        except self._errors as exc:
            raise StoreError(f"{self.url(key)}: cannot reach the store ({exc})") from exc

    def read_bytes(self, key: str) -> bytes:
        path = self.path(key)
        try:
            return self.fs.cat_file(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.url(key)}: no such file in the store") from None
        except self._errors as exc:
            raise StoreError(f"{self.url(key)}: read failed ({exc})") from exc

    def list(self, prefix: str = "", *, recursive: bool = False) -> list[str]:
        """Keys below ``prefix`` (files only), sorted. Empty when the prefix does not exist."""
        base = self.path(prefix) if prefix else self.root
        try:
            if recursive:
                paths = self.fs.find(base)
            else:
                paths = [
                    info["name"] for info in self.fs.ls(base, detail=True) if info.get("type") != "directory"
                ]
        except FileNotFoundError:
            return []
        except self._errors as exc:
            raise StoreError(
                f"{self.url(prefix) if prefix else self.root_url}: listing failed ({exc})"
            ) from exc
        return sorted(self.key_of(p) for p in paths if not _is_temporary(p))

    def signatures(self, prefix: str) -> dict[str, str]:
        """Key -> a string that changes when the file changes (size and modification time / ETag)."""
        try:
            found = self.fs.find(self.path(prefix), detail=True)
        except FileNotFoundError:
            return {}
        except self._errors as exc:
            raise StoreError(f"{self.url(prefix)}: listing failed ({exc})") from exc
        out = {}
        for path, info in found.items():
            if _is_temporary(path) or info.get("type") == "directory":
                continue
            stamp = (
                info.get("ETag") or info.get("LastModified") or info.get("mtime") or info.get("created") or ""
            )
            out[self.key_of(path)] = f"{info.get('size')}:{stamp}"
        return dict(sorted(out.items()))

    def glob(self, pattern: str) -> builtins.list[str]:
        """Keys matching a glob pattern relative to the root (``incoming/*/manifest.csv``)."""
        try:
            found = self.fs.glob(self.path(pattern))
        except self._errors as exc:
            raise StoreError(f"{self.url(pattern)}: listing failed ({exc})") from exc
        return sorted(self.key_of(p) for p in found if not _is_temporary(p))

    def read_parquet(self, key: str):  # -> pandas.DataFrame
        use_system_arrow_pool()  # before pandas, which loads pyarrow
        import pandas as pd

        data = self.read_bytes(key)
        with self._table_errors(key):
            return pd.read_parquet(io.BytesIO(data))

    def read_table(self, key: str, columns: builtins.list[str] | None = None):  # -> pyarrow.Table
        """A Parquet table (or some of its columns) as a pyarrow Table, without pandas.

        Read with ``pyarrow.parquet.ParquetFile``: ``pyarrow.parquet.read_table`` goes through
        ``pyarrow.dataset``, which imports pandas (40 MiB) on import.
        """
        use_system_arrow_pool()  # before pyarrow loads
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = self.path(key)
        # A local file is read from disk as it is decoded, not held whole in memory first.
        source = path if self.is_local and os.path.isfile(path) else io.BytesIO(self.read_bytes(key))
        with self._table_errors(key):
            parquet = pq.ParquetFile(source)
            schema = parquet.schema_arrow
            if columns is not None:
                missing = [name for name in columns if name not in schema.names]
                if missing:
                    raise ValueError(f"{self.url(key)}: no columns {missing}; it has {schema.names}")
                schema = pa.schema([schema.field(name) for name in columns], metadata=schema.metadata)
            # Decoded a batch of rows at a time: reading a row group whole holds its decoded
            # pages beside the table being built (a 4,000-image annotations table of 38 MB
            # peaked 29 MiB above its size that way, 3 MiB in batches).
            batches = parquet.iter_batches(
                batch_size=self.READ_BATCH_ROWS, columns=columns, use_threads=False
            )
            return pa.Table.from_batches(list(batches), schema=schema)

    def read_schema(self, key: str):  # -> pyarrow.Schema
        """A Parquet table's schema from its footer alone (ranged reads on an object store)."""
        use_system_arrow_pool()
        import pyarrow.parquet as pq

        if not self.exists(key):
            raise FileNotFoundError(f"{self.url(key)}: no such file in the store")
        with self._table_errors(key), self.fs.open(self.path(key), "rb") as handle:
            return pq.read_schema(handle)

    @contextlib.contextmanager
    def _table_errors(self, key: str) -> Iterator[None]:
        """A file that is not a readable Parquet table: a ValueError naming it (pyarrow's own
        message names a buffer, or nothing)."""
        import pyarrow as pa

        try:
            yield
        except (pa.ArrowException, OSError) as exc:
            raise ValueError(f"{self.url(key)}: not a readable Parquet table ({exc})") from exc

    # -- writing -------------------------------------------------------------------------

    def write_bytes(self, key: str, data: bytes, *, durable: bool = True) -> str:
        """Atomically create or replace ``key``; refused under ``incoming/`` (raw uploads).

        ``durable=False`` skips the per-file fsync (the rename stays atomic): for many files
        that a later marker file vouches for, after :meth:`sync` (as a release does).
        """
        key = normalize_key(key)
        if key.startswith(RAW_PREFIXES):
            raise RawUploadError(
                f"{self.url(key)}: raw uploads under {RAW_PREFIXES} are never modified by the pipeline"
            )
        self._atomic_write(key, data, durable=durable)
        return key

    def sync(self) -> None:
        """Flush every write made with ``durable=False`` to disk (local stores; S3 PUTs are durable)."""
        if self.is_local:
            os.sync()

    def put_upload(self, key: str, data: bytes) -> str:
        """Write a new raw file under ``incoming/`` or ``reviews/``; an existing file is never replaced."""
        key = normalize_key(key)
        if not key.startswith(RAW_PREFIXES):
            raise StoreKeyError(f"upload key {key!r} must be under one of {RAW_PREFIXES}")
        if self.exists(key):
            raise RawUploadError(f"{self.url(key)}: raw upload already exists and is never replaced")
        self._atomic_write(key, data)
        return key

    def write_parquet(self, key: str, frame, *, durable: bool = True) -> str:
        """Write a DataFrame or a pyarrow Table as Parquet (atomically)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        use_system_arrow_pool()
        buffer = io.BytesIO()
        if isinstance(frame, pa.Table):
            pq.write_table(frame, buffer)
        else:
            frame.to_parquet(buffer, index=False)
        return self.write_bytes(key, buffer.getvalue(), durable=durable)

    def put_file(self, key: str, local_path: str) -> str:
        """Atomically copy a local file to ``key`` (large files that a library wrote to disk: HDF5)."""
        key = normalize_key(key)
        if key.startswith(RAW_PREFIXES):
            raise RawUploadError(f"{self.url(key)}: raw uploads are never modified by the pipeline")
        self._atomic_write(key, local_path=local_path)
        return key

    def size(self, key: str) -> int:
        """Bytes of ``key``."""
        try:
            return int(self.fs.size(self.path(key)))
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.url(key)}: no such file in the store") from None
        except self._errors as exc:
            raise StoreError(f"{self.url(key)}: cannot reach the store ({exc})") from exc

    def link(self, source: str, key: str) -> str:
        """Make ``key`` hold the bytes of ``source`` without sending them again: a hard link on a
        local store (both names share one inode, which is made read-only: a release's files are
        never changed in place, and the link makes that a rule of the filesystem too), a
        server-side copy on S3 (CopyObject: no bytes through this machine). Atomic like a write:
        a reader sees no file or the whole one. Returns how the bytes got there: "link",
        "server-copy", or "copy" where hard links are refused (another filesystem)."""
        key, source = normalize_key(key), normalize_key(source)
        if key.startswith(RAW_PREFIXES):
            raise RawUploadError(f"{self.url(key)}: raw uploads are never modified by the pipeline")
        path, origin = self.path(key), self.path(source)
        try:
            if not self.is_local:
                self.fs.copy(origin, path)
                return "server-copy"
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = os.path.join(os.path.dirname(path), f"{_temporary_prefix()}t{threading.get_ident()}.part")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)  # left by a process of the same id that was killed here
            try:
                os.link(origin, tmp)
                how = "link"
                mode = os.stat(origin).st_mode
                if mode & 0o222:
                    os.chmod(origin, mode & ~0o222)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                    raise
                shutil.copyfile(origin, tmp)
                how = "copy"
            os.replace(tmp, path)
            return how
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.url(source)}: no such file in the store") from None
        except self._errors as exc:
            raise StoreError(f"{self.url(key)}: link from {self.url(source)} failed ({exc})") from exc

    def sweep_temporary(self, prefix: str) -> int:
        """Remove the temporary files under ``prefix`` whose writer was killed mid-write (a
        process of this host that is gone); returns how many. They were never visible (no
        listing shows them, no key names them), only disk held; a live writer's file is left
        alone, so two processes at work on one release do not disturb each other. An object
        store has none: a PUT is whole or absent."""
        if not self.is_local:
            return 0
        swept = 0
        for folder, _, names in os.walk(self.path(prefix)):
            for name in names:
                if _is_temporary(name) and _writer_gone(name):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(folder, name))
                        swept += 1
        return swept

    def delete(self, key: str) -> None:
        key = normalize_key(key)
        if key.startswith(RAW_PREFIXES):
            raise RawUploadError(f"{self.url(key)}: raw uploads are never deleted by the pipeline")
        if self.exists(key):
            self.fs.rm(self.path(key))

    def _atomic_write(
        self, key: str, data: bytes | None = None, *, local_path: str | None = None, durable: bool = True
    ) -> None:
        """Write ``data`` (or copy the file ``local_path``) to ``key`` so that readers see the old
        content or the whole new one: a local temporary file renamed over the target, one S3 PUT."""
        path = self.path(key)
        try:
            if self.is_local:
                folder = os.path.dirname(path)
                os.makedirs(folder, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=folder, prefix=_temporary_prefix(), suffix=".part")
                try:
                    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; tools and servers read these
                    with os.fdopen(fd, "wb") as handle:
                        if local_path is None:
                            assert data is not None
                            handle.write(data)
                        else:
                            with open(local_path, "rb") as source:
                                shutil.copyfileobj(source, handle, 1 << 20)
                        handle.flush()
                        if durable:
                            os.fsync(handle.fileno())
                    os.replace(tmp, path)
                except BaseException:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
                    raise
            elif local_path is None:
                self.fs.pipe_file(path, data)
            else:
                self.fs.put_file(local_path, path)  # one PUT / multipart upload: visible when complete
        except self._errors as exc:
            raise StoreError(f"{self.url(key)}: write failed ({exc})") from exc


def _is_temporary(path: str) -> bool:
    name = posixpath.basename(path)
    return name.startswith(".tmp-") and name.endswith(".part")


def _temporary_prefix() -> str:
    """``.tmp-<host>-<pid>-``: a temporary file names its writer, so that one a killed writer left
    can be told from one being written (:meth:`DatasetStore.sweep_temporary`)."""
    return f".tmp-{socket.gethostname()}-{os.getpid()}-"


def _writer_gone(name: str) -> bool:
    """Whether the temporary file ``name`` was left by a process of this host that is gone.

    >>> _writer_gone(f".tmp-{socket.gethostname()}-{os.getpid()}-x1.part")
    False
    >>> _writer_gone(".tmp-another-host-1-x1.part")  # another machine's writer: not ours to judge
    False
    """
    host_pid, _, _ = name[len(".tmp-") :].rpartition("-")
    host, _, pid = host_pid.rpartition("-")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False

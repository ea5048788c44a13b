"""Arrow helpers of the release path: values read from pyarrow Tables without loading pandas.

pyarrow's ``to_numpy``, its timestamp ``to_pylist`` and ``pa.array`` of a list import pandas
(40 MiB), which the per-image exporters do not otherwise need.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


def as_arrow(table: pa.Table | pd.DataFrame) -> pa.Table:
    """A pyarrow Table of a table given as one or as a pandas DataFrame (its index dropped)."""
    import pyarrow as pa

    return table if isinstance(table, pa.Table) else pa.Table.from_pandas(table, preserve_index=False)


def column_values(table: pa.Table, name: str) -> list:
    """A column as Python values; timestamps as UTC datetimes.

    Read without pandas: pyarrow's ``to_numpy`` and its timestamp ``to_pylist`` import pandas
    (40 MiB), which the per-image exporters do not otherwise need.
    """
    import pyarrow as pa

    column = table.column(name)
    if not pa.types.is_timestamp(column.type):
        return column.to_pylist()
    unit = column.type.unit
    return [
        None if ticks is None else _utc(ticks, unit)
        for chunk in column.chunks
        for ticks in chunk.view(pa.int64()).to_pylist()
    ]


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}


def _utc(ticks: int, unit: str) -> datetime.datetime:
    """An Arrow timestamp's ticks (of ``unit``) since the epoch as a UTC datetime (to the µs)."""
    return _EPOCH + datetime.timedelta(microseconds=ticks * 10**6 // _PER_SECOND[unit])


def run_list(values: list) -> list[tuple]:
    """``(value, start, end)`` of each run of equal consecutive values.

    >>> run_list(["a", "a", "b", "a"])
    [('a', 0, 2), ('b', 2, 3), ('a', 3, 4)]
    """
    runs: list[tuple] = []
    for index, value in enumerate(values):
        if runs and runs[-1][0] == value:
            runs[-1] = (value, runs[-1][1], index + 1)
        else:
            runs.append((value, index, index + 1))
    return runs


class Cells:
    """Some columns of a table read one row at a time, in place (timestamps as UTC datetimes):
    a row's values without a Python object per cell of the table."""

    def __init__(self, table: pa.Table, names: list[str]) -> None:
        import pyarrow as pa

        self._columns: dict[str, tuple[pa.Array, str | None]] = {}
        for name in names:
            column = table.column(name)
            if column.num_chunks == 0:  # an empty table: no row is ever read
                continue
            array = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
            unit = column.type.unit if pa.types.is_timestamp(column.type) else None
            self._columns[name] = (array.view(pa.int64()) if unit else array, unit)

    def row(self, position: int) -> dict:
        values = {}
        for name, (array, unit) in self._columns.items():
            value = array[position].as_py()
            values[name] = _utc(value, unit) if unit and value is not None else value
        return values


def table_of_columns(columns: dict[str, list], types: dict[str, str]) -> pa.Table:
    """A pyarrow Table of Python lists (``types``: "string", "int64" or "bool" per column), built
    from raw buffers: ``pa.array`` on any Python or NumPy input imports pandas (40 MiB), which
    the export path does not otherwise load.

    >>> table_of_columns({"a": ["x", "yz"], "n": [1, 2], "ok": [True, False]}, {"a": "string", "n": "int64", "ok": "bool"}).to_pylist()
    [{'a': 'x', 'n': 1, 'ok': True}, {'a': 'yz', 'n': 2, 'ok': False}]
    """
    import pyarrow as pa

    arrays = []
    for name, values in columns.items():
        kind, n = types[name], len(values)
        if kind == "string":
            data = [str(v).encode() for v in values]
            offsets = np.zeros(n + 1, np.int64)
            offsets[1:] = np.cumsum([len(d) for d in data], dtype=np.int64)
            array = pa.LargeStringArray.from_buffers(
                n, pa.py_buffer(offsets.tobytes()), pa.py_buffer(b"".join(data))
            )
        elif kind == "int64":
            array = pa.Array.from_buffers(
                pa.int64(), n, [None, pa.py_buffer(np.asarray(values, np.int64).tobytes())]
            )
        elif kind == "bool":
            bits = np.packbits(np.asarray(values, bool), bitorder="little")
            array = pa.Array.from_buffers(pa.bool_(), n, [None, pa.py_buffer(bits.tobytes())])
        else:
            raise ValueError(f"column {name}: unknown type {kind!r}")
        arrays.append(array)
    return pa.Table.from_arrays(arrays, names=list(columns))


def concat_parquet(store, keys: list[str], target: str) -> int:  # store: DatasetStore
    """Write the Parquet tables ``keys`` one after another into ``target`` (atomically), holding
    one of them in memory at a time; returns the rows written.

    Their schemas are unified first from the files' footers (a column missing from one is null
    there; a column null in one and typed in another takes the type), and the pandas metadata of
    the widest is kept, so pandas reads the nullable and timestamp columns back as they went in.
    """
    import os
    import tempfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    schemas = [store.read_schema(key) for key in keys]
    if not schemas:
        raise ValueError(f"{target}: nothing to concatenate")
    unified = pa.unify_schemas([s.remove_metadata() for s in schemas], promote_options="permissive")
    widest = max(schemas, key=lambda s: len(s.names))
    unified = unified.with_metadata(widest.metadata)
    handle, path = tempfile.mkstemp(suffix=".parquet")
    os.close(handle)
    rows = 0
    try:
        with pq.ParquetWriter(path, unified) as writer:
            for key in keys:
                table = store.read_table(key)
                columns = [
                    table.column(f.name).cast(f.type)
                    if f.name in table.column_names
                    else pa.nulls(len(table), f.type)
                    for f in unified
                ]
                writer.write_table(pa.Table.from_arrays(columns, schema=unified))
                rows += len(table)
        store.put_file(target, path)
    finally:
        os.unlink(path)
    return rows


#: The value of each ASCII byte as a hex digit; 255 where it is not one.
_HEX_DIGIT = np.full(256, 255, dtype=np.uint8)
_HEX_DIGIT[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10)
_HEX_DIGIT[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16)
_HEX_DIGIT[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16)


def hex_words(column: pa.Array | pa.ChunkedArray, what: str = "value") -> np.ndarray:
    """The first 16 hex digits of each string of an Arrow column as one uint64 each, decoded in
    NumPy: 8 bytes an image where a Python int or str is 30-110 (a checksum's prefix, a dHash).

    >>> import pyarrow as pa
    >>> [f"{w:016x}" for w in hex_words(pa.array(["00ff00ff00ff00ffabc", "FFFFFFFFFFFFFFFF"]))]
    ['00ff00ff00ff00ff', 'ffffffffffffffff']
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if len(column) == 0:
        return np.zeros(0, dtype=np.uint64)
    if column.null_count or (len(column) and pc.min(pc.utf8_length(column)).as_py() < 16):
        raise ValueError(f"{what}: every value must have at least 16 hex digits")
    fixed = pc.utf8_slice_codeunits(column, 0, 16).cast(pa.binary(16))
    raw = np.frombuffer(fixed.buffers()[1], np.uint8, count=16 * len(fixed), offset=16 * fixed.offset)
    digits = _HEX_DIGIT[raw].reshape(-1, 16)
    if (digits == 255).any():
        row = int(np.flatnonzero((digits == 255).any(axis=1))[0])
        raise ValueError(f"{what}: row {row} ({column[row].as_py()!r}) is not hexadecimal")
    packed = (digits[:, 0::2] << 4) | digits[:, 1::2]  # 8 bytes a row, big-endian: no 16 words a row
    return np.ascontiguousarray(packed).view(">u8").ravel().astype(np.uint64)


_HEX_CHAR = np.frombuffer(b"0123456789abcdef", np.uint8)


def hex_strings(words: np.ndarray) -> pa.Array:
    """Each uint64 as its 16 lowercase hex digits, an Arrow string array: :func:`hex_words`' inverse,
    built in NumPy (16 bytes a value and its offset, no Python string).

    >>> import pyarrow as pa
    >>> hex_strings(hex_words(pa.array(["00ff00ff00ff00ffabc", "FFFFFFFFFFFFFFFF"]))).to_pylist()
    ['00ff00ff00ff00ff', 'ffffffffffffffff']
    """
    import pyarrow as pa

    raw = np.asarray(words, dtype=">u8").view(np.uint8).reshape(-1, 8)
    digits = np.empty((len(raw), 16), dtype=np.uint8)
    digits[:, 0::2] = _HEX_CHAR[raw >> 4]
    digits[:, 1::2] = _HEX_CHAR[raw & 15]
    offsets = np.arange(0, 16 * len(raw) + 1, 16, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), len(raw), [None, pa.py_buffer(offsets), pa.py_buffer(digits)])

import os

import pandas as pd
import pytest

from dataset_pipeline.store import DatasetStore, RawUploadError, StoreKeyError, normalize_key
from resources import DatasetStoreResource


@pytest.mark.parametrize(
    "key",
    ["../x", "a/../../x", "/etc/passwd", "s3://other/x", "a\\b", "~/x", "C:/x", "", "  ", ".", "a/\x00"],
)
def test_keys_that_escape_or_are_not_relative_are_refused(key):
    with pytest.raises(StoreKeyError):
        normalize_key(key)


def test_key_normalization_keeps_plain_keys():
    assert normalize_key("a//b/./c.txt") == "a/b/c.txt"


def test_read_write_list_round_trip(any_store: DatasetStore):
    any_store.write_bytes("tables/a.bin", b"one")
    any_store.write_bytes("tables/sub/b.bin", b"two")
    any_store.write_bytes("tables/a.bin", b"three")  # replace
    assert any_store.read_bytes("tables/a.bin") == b"three"
    assert any_store.list("tables") == ["tables/a.bin"]
    assert any_store.list("tables", recursive=True) == ["tables/a.bin", "tables/sub/b.bin"]
    assert any_store.glob("tables/*/b.bin") == ["tables/sub/b.bin"]
    assert any_store.list("nothing-here") == []
    frame = pd.DataFrame({"image_id": ["x", "y"], "width": [640, 320]})
    any_store.write_parquet("tables/t.parquet", frame)
    pd.testing.assert_frame_equal(any_store.read_parquet("tables/t.parquet"), frame)
    with pytest.raises(FileNotFoundError, match="tables/missing.bin"):
        any_store.read_bytes("tables/missing.bin")


def test_tables_read_as_arrow_or_pandas_and_a_corrupt_one_is_named(any_store: DatasetStore):
    frame = pd.DataFrame({"image_id": ["x", "y"], "width": [640, 320]})
    any_store.write_parquet("tables/t.parquet", frame)
    assert any_store.read_table("tables/t.parquet").to_pydict() == {
        "image_id": ["x", "y"],
        "width": [640, 320],
    }
    assert any_store.read_table("tables/t.parquet", columns=["width"]).column_names == ["width"]
    any_store.write_bytes("tables/bad.parquet", b"PAR1 cut short")
    for read in (any_store.read_table, any_store.read_parquet):
        with pytest.raises(ValueError, match="tables/bad.parquet: not a readable Parquet table"):
            read("tables/bad.parquet")
    with pytest.raises(FileNotFoundError, match="tables/missing.parquet"):
        any_store.read_table("tables/missing.parquet")


def test_a_table_is_read_in_batches_whole_and_typed(local_store: DatasetStore):
    """Decoded a batch of rows at a time (READ_BATCH_ROWS), the table keeps every row in order,
    its types and its pandas metadata; an empty table keeps its columns."""
    rows = 2 * DatasetStore.READ_BATCH_ROWS + 5
    frame = pd.DataFrame(
        {
            "image_id": [f"b/{i:06d}" for i in range(rows)],
            "capture_ts": pd.date_range("2026-11-01", periods=rows, freq="s", tz="UTC"),
            "score": [i / 7 for i in range(rows)],
        }
    )
    local_store.write_parquet("tables/big.parquet", frame)
    table = local_store.read_table("tables/big.parquet")
    assert table.column("image_id").num_chunks == 3
    pd.testing.assert_frame_equal(table.to_pandas(), frame)
    some = local_store.read_table("tables/big.parquet", columns=["score", "image_id"])
    assert some.column_names == ["score", "image_id"] and some.num_rows == rows
    with pytest.raises(ValueError, match=r"tables/big.parquet: no columns \['split'\]"):
        local_store.read_table("tables/big.parquet", columns=["image_id", "split"])
    local_store.write_parquet("tables/empty.parquet", frame.iloc[:0])
    empty = local_store.read_table("tables/empty.parquet")
    assert empty.num_rows == 0 and empty.schema.equals(table.schema)


def test_escaping_keys_are_refused_by_every_operation(any_store: DatasetStore):
    for operation in (
        lambda: any_store.write_bytes("../outside.txt", b"x"),
        lambda: any_store.read_bytes("../../etc/passwd"),
        lambda: any_store.exists("/etc/passwd"),
        lambda: any_store.put_upload("incoming/../tables/x", b"x"),
    ):
        with pytest.raises(StoreKeyError):
            operation()


def test_raw_uploads_are_never_modified(any_store: DatasetStore):
    any_store.put_upload("incoming/b1/images/x.jpg", b"raw bytes")
    with pytest.raises(RawUploadError, match="never replaced"):
        any_store.put_upload("incoming/b1/images/x.jpg", b"other bytes")
    with pytest.raises(RawUploadError, match="never modified"):
        any_store.write_bytes("incoming/b1/images/x.jpg", b"other bytes")
    with pytest.raises(RawUploadError, match="never deleted"):
        any_store.delete("incoming/b1/images/x.jpg")
    with pytest.raises(StoreKeyError, match="must be under one of"):
        any_store.put_upload("tables/x.jpg", b"x")
    assert any_store.read_bytes("incoming/b1/images/x.jpg") == b"raw bytes"


def test_local_write_is_atomic_when_the_rename_fails(local_store: DatasetStore, monkeypatch):
    local_store.write_bytes("tables/t.bin", b"complete old content")

    def crash(*args, **kwargs):
        raise OSError("disk vanished")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(RuntimeError, match="write failed"):
        local_store.write_bytes("tables/t.bin", b"new content that never lands")
    monkeypatch.undo()
    assert local_store.read_bytes("tables/t.bin") == b"complete old content"
    folder = os.path.dirname(local_store.path("tables/t.bin"))
    assert os.listdir(folder) == ["t.bin"]  # no temporary file left behind


def test_temporary_files_are_not_listed(local_store: DatasetStore):
    local_store.write_bytes("tables/t.bin", b"x")
    folder = os.path.dirname(local_store.path("tables/t.bin"))
    open(os.path.join(folder, ".tmp-abc.part"), "wb").close()  # as a killed writer leaves it
    assert local_store.list("tables") == ["tables/t.bin"]


def test_local_resource_is_a_folder(tmp_path):
    store = DatasetStoreResource(root_url=str(tmp_path / "s")).get_store()
    assert store.is_local
    store.write_bytes("x/y.txt", b"1")
    assert (tmp_path / "s" / "x" / "y.txt").read_bytes() == b"1"


@pytest.mark.parametrize(
    ("before", "environment", "pool", "mimalloc_used"),
    [
        # the store loads pyarrow: the variable is set first, so the Parquet reader's buffers too
        ("", None, "system", False),
        # pyarrow came first (pandas loads it): set_memory_pool on the first read (the reader's buffers escape it)
        ("import pandas", None, "system", True),
        ("", "mimalloc", "mimalloc", True),  # a pool the user names is kept
    ],
)
def test_tables_are_read_with_the_system_allocator_unless_another_is_named(
    tmp_path, before, environment, pool, mimalloc_used
):
    import subprocess
    import sys

    pd.DataFrame({"a": [1, 2]}).to_parquet(tmp_path / "t.parquet")
    script = (
        f"{before}\n"
        "from dataset_pipeline.store import DatasetStore\n"
        f"DatasetStore({str(tmp_path)!r}).read_table('t.parquet')\n"
        "import pyarrow\n"
        "print(pyarrow.default_memory_pool().backend_name, pyarrow.mimalloc_memory_pool().max_memory() > 0)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if environment:
        env["ARROW_DEFAULT_MEMORY_POOL"] = environment
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split() == [pool, str(mimalloc_used)]

import io

import pandas as pd
import pytest
from PIL import Image

from dataset_pipeline.images import decode_image
from dataset_pipeline.raw_captures import (
    ManifestError,
    find_ready_batches,
    image_id_for,
    ingest_batch,
    read_manifest,
)
from dataset_pipeline.schemas import CAPTURES
from tests.conftest import copy_upload

HEADER = "image_file,capture_ts,camera_model,scene_id,lighting,episode_id,frame_index"


def _jpeg(width=96, height=64, colour=(200, 10, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_manifest_missing_column_is_named():
    data = b"image_file,capture_ts,camera_model,scene_id,episode_id,frame_index\nimages/a.jpg,2026-01-01,c,s,e,0\n"
    with pytest.raises(ManifestError) as error:
        read_manifest(data, "incoming/b1/manifest.csv")
    assert "incoming/b1/manifest.csv" in str(error.value)
    assert "missing required column(s) 'lighting'" in str(error.value)


@pytest.mark.parametrize(
    "rows, expected",
    [
        (
            ["images/a.jpg,2026-01-01,c,s,dim,e,0", "images/a.jpg,2026-01-01,c,s,dim,e,1"],
            "row 3, column 'image_file': duplicate",
        ),
        (["../../etc/passwd,2026-01-01,c,s,dim,e,0"], "row 2, column 'image_file'"),
        (["/abs/a.jpg,2026-01-01,c,s,dim,e,0"], "row 2, column 'image_file'"),
        ([",2026-01-01,c,s,dim,e,0"], "row 2, column 'image_file': empty"),
        ([], "lists no images"),
    ],
)
def test_structural_manifest_errors_name_row_and_column(rows, expected):
    data = "\n".join([HEADER, *rows]).encode() + b"\n"
    with pytest.raises(ManifestError, match=expected.replace("(", r"\(")):
        read_manifest(data, "m.csv")


def test_duplicate_image_ids_are_refused():
    data = (
        HEADER + ",image_id\nimages/a.jpg,2026-01-01,c,s,dim,e,0,x\nimages/b.jpg,2026-01-01,c,s,dim,e,1,x\n"
    ).encode()
    with pytest.raises(ManifestError, match="row 3, column 'image_id': duplicate value 'x'"):
        read_manifest(data, "m.csv")


def test_non_utf8_manifest_is_refused():
    with pytest.raises(ManifestError, match="not UTF-8"):
        read_manifest(b"\xff\xfe\x00garbage", "m.csv")


def test_decode_image_reports_truncation_emptiness_and_size():
    jpeg = _jpeg()
    assert decode_image(jpeg, "a.jpg").width == 96
    with pytest.raises(ValueError, match="a.jpg: empty file"):
        decode_image(b"", "a.jpg")
    with pytest.raises(ValueError, match="a.jpg: corrupt or truncated"):
        decode_image(jpeg[: len(jpeg) // 2], "a.jpg")
    with pytest.raises(ValueError, match="not a decodable image"):
        decode_image(b"this is not an image", "a.jpg")
    with pytest.raises(ValueError, match="exceeds the limit of 1000"):
        decode_image(jpeg, "a.jpg", max_pixels=1000)


def test_demo_batch_ingests_completely(demo_batch):
    store, upload = demo_batch
    result = ingest_batch(store, upload.batch)
    assert len(result.captures) == upload.n_images == 16
    assert result.quarantine.empty
    assert list(result.captures.columns) == list(CAPTURES.columns)
    row = result.captures.iloc[0]
    assert (row.width, row.height) == (640, 480)
    assert row.image_id == image_id_for(upload.batch, "images/" + row.uri.rsplit("/", 1)[1])
    assert store.exists(row.uri) and store.exists(row.depth_uri)
    import hashlib

    assert row.sha256 == hashlib.sha256(store.read_bytes(row.uri)).hexdigest()
    assert str(result.captures.capture_ts.dtype) == "datetime64[us, UTC]"
    # the contact sheet: 12 thumbnails (3 rows of 4, legible in the UI) from across the batch
    ids = result.captures.image_id.tolist()
    assert len(result.thumbnails) == 12
    assert ids[0] in result.thumbnails and ids[-1] in result.thumbnails
    assert all(t.shape[1] == 240 for t in result.thumbnails.values())


def test_planted_bad_images_are_quarantined_and_the_rest_go_on(demo_batch, local_store):
    source, upload = demo_batch
    manifest = pd.read_csv(io.BytesIO(source.read_bytes(f"incoming/{upload.batch}/manifest.csv")), dtype=str)
    files = manifest["image_file"].tolist()
    truncated, empty, garbage, missing = files[0], files[1], files[2], files[3]
    batch = "planted"
    for key in source.list(f"incoming/{upload.batch}", recursive=True):
        name = key.split(f"incoming/{upload.batch}/", 1)[1]
        if name in (missing, "manifest.csv"):
            continue
        data = source.read_bytes(key)
        if name == truncated:
            data = data[: len(data) // 3]
        elif name == empty:
            data = b""
        elif name == garbage:
            data = b"\x00" * 500
        local_store.put_upload(f"incoming/{batch}/{name}", data)
    manifest.loc[4, "frame_index"] = "four"
    local_store.put_upload(f"incoming/{batch}/manifest.csv", manifest.to_csv(index=False).encode())

    result = ingest_batch(local_store, batch)
    reasons = dict(zip(result.quarantine.image_file, result.quarantine.reason, strict=True))
    assert set(reasons) == {truncated, empty, garbage, missing, files[4]}
    assert "truncated" in reasons[truncated]
    assert "empty file" in reasons[empty]
    assert "not a decodable image" in reasons[garbage]
    assert reasons[missing].startswith("missing")
    assert "frame_index" in reasons[files[4]]
    assert len(result.captures) == 16 - 5
    assert result.quarantine_share == pytest.approx(5 / 16)
    assert result.quarantine.set_index("image_file").loc[truncated, "manifest_row"] == 2


def test_unlisted_files_are_reported_not_ingested(demo_batch, local_store):
    source, upload = demo_batch
    local_store.put_upload("incoming/extra/images/stray.jpg", _jpeg())
    copy_upload(source, upload.batch, local_store, "extra")
    result = ingest_batch(local_store, "extra")
    assert result.unlisted_files == ["incoming/extra/images/stray.jpg"]
    assert len(result.captures) == 16


def test_missing_manifest_refuses_the_batch(local_store):
    local_store.put_upload("incoming/nomanifest/images/a.jpg", _jpeg())
    with pytest.raises(ManifestError, match="has no manifest.csv"):
        ingest_batch(local_store, "nomanifest")


def test_ready_batches_are_those_with_a_manifest(any_store):
    any_store.put_upload("incoming/b-ready/images/a.jpg", _jpeg())
    any_store.put_upload(
        "incoming/b-ready/manifest.csv", (HEADER + "\nimages/a.jpg,2026-01-01,c,s,dim,e,0\n").encode()
    )
    any_store.put_upload("incoming/b-uploading/images/a.jpg", _jpeg())
    assert find_ready_batches(any_store) == ["b-ready"]

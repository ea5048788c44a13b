"""The hostile-input corpus (tests/data/hostile, made by make_hostile.py): one test per file.

Each file must be refused with the documented error type, naming the file, the record and the
field, and never with a traceback from inside a library; nothing already stored may change.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from dataset_pipeline.formats.archives import ArchiveError, ArchiveLimits, read_members
from dataset_pipeline.formats.importing import AnnotationImportError
from dataset_pipeline.formats.reading import import_export
from dataset_pipeline.images import decode_image
from dataset_pipeline.layout import annotations_key
from dataset_pipeline.reviewed_annotations import import_batch_reviews
from tests.unit.test_importers import batch_images, options

HOSTILE = Path(__file__).parents[1] / "data" / "hostile"
LABEL_MAP = {"mug": "target_object", "table": "support_surface"}

EXPORTS = {
    "cvat_xxe_external_entity.xml": "document: refused unsafe XML",
    "cvat_billion_laughs.xml": "document: refused unsafe XML",
    "cvat_truncated.xml": "document: not well-formed XML (unclosed token: line 10",
    "cvat_utf16_declared_utf8.xml": "file: neither XML nor JSON",
    "cvat_unknown_encoding.xml": "document, field 'encoding': unknown XML encoding",
    "cvat_polygon_nan.xml": "<polygon> #1, field 'points': polygon 0 has a NaN or infinite coordinate",
    "cvat_polygon_outside_image.xml": "field 'points': polygon 0 reaches (4.0..4000.0, 0.0..6.0), outside the 8x6",
    "cvat_rle_overruns_box.xml": "<mask> #0, field 'rle': rle counts add up to 911 pixels; the 4x3 box has 12",
    "cvat_image_path_traversal.xml": "field 'name': image '../../etc/passwd' leaves the batch folder",
    "cvat_negative_size.xml": "field 'width': -8 is not a valid size",
    "cvat_label_not_in_taxonomy.xml": "field 'label': unknown label 'teapot'",
    "coco_truncated.json": "file: neither XML nor JSON (Unterminated string",
    "coco_latin1_bytes.json": "'utf-8' codec can't decode byte 0xe9",
    "coco_file_name_traversal.json": "images[0], field 'file_name': image '../../../etc/passwd' leaves the batch",
    "coco_file_name_absolute.json": "images[0], field 'file_name': image '/etc/passwd' is an absolute path",
    "coco_rle_overruns_image.json": "annotations[1] (id 2), field 'segmentation': RLE runs cover 4006 pixels",
    "coco_negative_size.json": "images[0], field 'file_name': image 'images/f1.jpg' is -8x6 in the export",
    "coco_huge_size.json": "is 1000000000x1000000000 in the export but 8x6 in the batch",
    "coco_polygon_infinite.json": "field 'segmentation': polygon 0 has a NaN or infinite coordinate",
    "coco_category_not_in_taxonomy.json": "field 'category_id → name': unknown label 'teapot'",
    "label_studio_truncated.json": "file: neither XML nor JSON (Expecting ',' delimiter",
    "label_studio_label_not_in_taxonomy.json": "field 'value.polygonlabels': unknown label 'teapot'",
    "label_studio_brush_overruns.json": "task 6 annotation 60 result 0, field 'value.rle'",
    "label_studio_negative_size.json": "field 'original_width/original_height': not positive integers (-8, 6)",
}
ARCHIVES = {
    "zip_slip.zip": "member '../../../../tmp/evil.xml': escapes the archive ('..' segment)",
    "zip_absolute_member.zip": "member '/tmp/evil.json': absolute path",
    "zip_symlink_member.zip": "member 'images/link.jpg': symbolic links are refused",
    "zip_bomb.zip": "member 'annotations.xml': inflates more than 200x its compressed size",
    "zip_truncated.zip": "not a readable zip archive",
}
IMAGES = {
    "image_empty.jpg": "empty file (0 bytes)",
    "image_truncated.jpg": "corrupt or truncated image",
    "image_not_an_image.jpg": "not a decodable image",
    "image_20000x20000.png": "20000x20000 = 400000000 pixels exceeds the limit of 50000000",
}


def test_the_corpus_is_complete():
    """Every file in the corpus has its test below (and the other way round)."""
    on_disk = {p.name for p in HOSTILE.iterdir() if p.suffix != ".py"}
    assert on_disk == set(EXPORTS) | set(ARCHIVES) | set(IMAGES) | {"zip_without_export.zip"}


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_hostile_export_is_refused_naming_file_record_and_field(name):
    with pytest.raises(AnnotationImportError) as error:
        import_export(
            (HOSTILE / name).read_bytes(),
            options(images=batch_images(), label_map=LABEL_MAP, source_file=name),
        )
    assert str(error.value).startswith(f"{name}: ")
    assert EXPORTS[name] in str(error.value)


@pytest.mark.parametrize(
    "name", ["cvat_image_path_traversal.xml", "coco_file_name_traversal.json", "coco_file_name_absolute.json"]
)
def test_a_path_leaving_the_batch_is_refused_without_an_image_index_too(name):
    """With no batch to look the image up in (`import-review` without --images), the name would become
    the image id (and the id a file name in a release): it is refused the same way."""
    with pytest.raises(AnnotationImportError) as error:
        import_export((HOSTILE / name).read_bytes(), options(label_map=LABEL_MAP, source_file=name))
    assert str(error.value).startswith(f"{name}: ") and EXPORTS[name] in str(error.value)


def test_label_studio_image_urls_are_read_by_their_path_and_may_not_climb_out():
    from dataset_pipeline.formats.importing import image_path

    assert image_path("/data/upload/3/1f2e-frame.jpg", url=True) == "data/upload/3/1f2e-frame.jpg"
    assert image_path("s3://robot-data/incoming/b1/images/a.jpg", url=True) == "incoming/b1/images/a.jpg"
    for hostile in ("/data/local-files/?d=../../etc/passwd", "/data/local-files/?d=%2e%2e/%2e%2e/etc/passwd"):
        with pytest.raises(ValueError, match="leaves the batch folder"):
            image_path(hostile, url=True)


@pytest.mark.parametrize("name", sorted(ARCHIVES))
def test_hostile_archive_is_refused(name):
    with pytest.raises(ArchiveError) as error:
        read_members((HOSTILE / name).read_bytes(), name, (".xml", ".json"))
    assert str(error.value).startswith(f"{name}: ") and ARCHIVES[name] in str(error.value)


def test_too_many_members_are_refused_before_reading():
    data = (HOSTILE / "zip_symlink_member.zip").read_bytes()  # 2 members
    with pytest.raises(ArchiveError, match="2 members; at most 1 are accepted"):
        read_members(data, "a.zip", (".xml",), ArchiveLimits(max_members=1))


def test_a_header_that_lies_does_not_help_a_bomb():
    """The inflated size is counted while reading, whatever the header says."""
    data = (HOSTILE / "zip_bomb.zip").read_bytes()
    with pytest.raises(ArchiveError, match="inflates beyond a member's limit of 1,048,576 bytes"):
        read_members(data, "b.zip", (".xml",), ArchiveLimits(max_member_bytes=2**20, max_ratio=10**9))


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_hostile_image_is_refused(name):
    with pytest.raises(ValueError) as error:
        decode_image((HOSTILE / name).read_bytes(), name)
    assert str(error.value).startswith(f"{name}: ") and IMAGES[name] in str(error.value)


BATCH = "b1"


@pytest.fixture
def batch_store(local_store):
    """A batch whose captures are the two 8x6 images the minimal CVAT export of test_importers names."""
    from dataset_pipeline.layout import captures_key

    captures = pd.DataFrame(
        {
            "image_id": ["b1/images/f0", "b1/images/f1"],
            "uri": ["incoming/b1/images/f0.jpg", "incoming/b1/images/f1.jpg"],
            "height": [6, 6],
            "width": [8, 8],
        }
    )
    local_store.write_parquet(captures_key(BATCH), captures)
    return local_store


def _cvat_zip(xml: bytes) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("annotations.xml", xml)
        archive.writestr("images/f0.jpg", b"CVAT puts the task's images here; they are not read")
    return buffer.getvalue()


def test_a_zipped_cvat_export_imports_like_the_bare_file(batch_store):
    from tests.unit.test_importers import CVAT_XML, TAXONOMY

    batch_store.put_upload(f"reviews/{BATCH}/bare/annotations.xml", CVAT_XML)
    bare = import_batch_reviews(batch_store, BATCH, TAXONOMY).annotations
    batch_store.put_upload(f"reviews/{BATCH}/zipped/task_7.zip", _cvat_zip(CVAT_XML))
    both = import_batch_reviews(batch_store, BATCH, TAXONOMY)
    assert len(bare) == 2
    assert both.files == {f"reviews/{BATCH}/bare/annotations.xml": 2, f"reviews/{BATCH}/zipped/task_7.zip": 2}
    zipped = both.annotations[both.annotations.source_file.str.endswith("task_7.zip!/annotations.xml")]
    assert sorted(zipped.rle) == sorted(bare.rle)


def test_a_hostile_zip_in_the_drop_folder_changes_nothing_stored(batch_store):
    from tests.unit.test_importers import CVAT_XML, TAXONOMY

    batch_store.put_upload(f"reviews/{BATCH}/annotations.xml", CVAT_XML)
    table = import_batch_reviews(batch_store, BATCH, TAXONOMY).annotations
    batch_store.write_parquet(annotations_key(BATCH), table)
    before = {
        k: hashlib.sha256(batch_store.read_bytes(k)).hexdigest() for k in batch_store.list("", recursive=True)
    }
    for name in (*ARCHIVES, "zip_without_export.zip"):
        key = f"reviews/{BATCH}/{name}"
        batch_store.put_upload(key, (HOSTILE / name).read_bytes())
        with pytest.raises(AnnotationImportError, match=rf"{name}: (member|archive)"):
            import_batch_reviews(batch_store, BATCH, TAXONOMY)
        batch_store.fs.rm(batch_store.path(key))  # the operator removes it; the next one is tried
    after = {
        k: hashlib.sha256(batch_store.read_bytes(k)).hexdigest() for k in batch_store.list("", recursive=True)
    }
    assert after == before

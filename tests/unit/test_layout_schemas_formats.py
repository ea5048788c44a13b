"""The single homes: the store layout, the table schemas, and the formats' registry and protocols."""

import pytest

from dataset_pipeline import layout, schemas
from dataset_pipeline.formats import EXPORT_FORMATS, IMPORT_FORMATS, exporters, importers
from dataset_pipeline.formats.exporting import PerImageExporter
from dataset_pipeline.formats.reading import detect_format
from tests.conftest import DATA


@pytest.mark.parametrize(
    "key_of",
    [
        layout.upload_prefix,
        layout.manifest_key,
        layout.captures_key,
        layout.premasks_key,
        layout.annotations_key,
        layout.review_prefix,
        layout.ground_truth_key,
        layout.tasks_prefix,
        layout.contact_sheet_preview,
    ],
)
def test_every_batch_key_refuses_a_batch_name_that_is_not_a_folder_name(key_of):
    assert key_of("2026-11-24-kitchen-b").count("2026-11-24-kitchen-b") == 1
    for bad in ("../tables", "a/b", "", ".hidden", "x" * 200):
        with pytest.raises(ValueError, match="batch name"):
            key_of(bad)


def test_keys_of_a_batch_read_back_their_batch():
    assert layout.batch_of_table(layout.captures_key("b-1")) == "b-1"
    assert layout.batch_of_manifest(layout.manifest_key("b-1")) == "b-1"
    assert layout.batch_of_review(layout.peer_review_key("b-1")) == "b-1"
    assert layout.upload_relative("b-1", layout.upload_file("b-1", "images/a.jpg")) == "images/a.jpg"
    assert layout.version_of_release_manifest(f"{layout.release_prefix('v1')}/release.json") == "v1"
    with pytest.raises(layout.StoreKeyError):
        layout.upload_file("b-1", "../../tables/x.parquet")  # a manifest path cannot leave its batch


def test_every_per_batch_task_file_is_under_the_batchs_tasks_folder():
    files = layout.task_files("b-1")
    assert set(files) == {"label_studio_config", "label_studio_tasks", "cvat_annotations", "cvat_labels"}
    assert all(key.startswith(layout.tasks_prefix("b-1") + "/") for key in files.values())


def test_an_empty_table_has_its_schemas_columns_and_dtypes():
    empty = schemas.ANNOTATIONS.frame()
    assert list(empty.columns) == list(schemas.ANNOTATIONS.columns)
    assert {c: str(empty[c].dtype) for c in schemas.ANNOTATIONS.dtypes} == dict(schemas.ANNOTATIONS.dtypes)
    one = schemas.PREMASKS.frame(
        [{"premask_id": "p", "class_id": None, "height": 2, "width": 3, "rejected": 0}]
    )
    assert str(one.class_id.dtype) == "Int64" and one.class_id.isna().all() and one.rejected.dtype == bool


def test_a_table_from_columns_needs_every_column():
    with pytest.raises(ValueError, match=r"columns \['project_id'\] are missing"):
        schemas.LABEL_STUDIO_TASKS.from_columns({"image_id": ["a"], "task_id": [1]})
    table = schemas.LABEL_STUDIO_TASKS.from_columns(
        {"project_id": 7, "task_id": [1, 2], "image_id": ["a", "b"]}
    )
    assert list(table.columns) == ["image_id", "task_id", "project_id"] and table.project_id.tolist() == [
        7,
        7,
    ]
    with pytest.raises(ValueError, match="dtypes for columns it does not have"):
        schemas.TableSchema("bad", ("a",), {"b": "int64"})


def test_the_registries_name_every_format_once_and_each_exporter_keeps_the_protocol():
    named = [name for importer in importers() for name in importer.FORMATS]
    assert sorted(named) == sorted(IMPORT_FORMATS) and len(named) == len(set(named))
    assert list(exporters()) == list(EXPORT_FORMATS)
    per_image = {name for name, exporter in exporters().items() if isinstance(exporter, PerImageExporter)}
    assert per_image == {"yolo_seg", "semantic_png"}
    for exporter in exporters().values():
        assert callable(exporter.export) and callable(exporter.validate)


@pytest.mark.parametrize(
    ("fixture", "fmt"),
    [
        ("fixtures/cvat_for_images_train.xml", "cvat-xml"),
        ("fixtures/coco_instances_train.json", "coco"),
        ("fixtures/label_studio_export.json", "label-studio"),
    ],
)
def test_each_tools_own_file_is_recognised_by_its_importer(fixture, fmt):
    assert detect_format((DATA / fixture).read_bytes(), fixture) == fmt


def test_what_no_importer_claims_is_refused_saying_what_it_is():
    with pytest.raises(ValueError, match="not a CVAT annotations export"):
        detect_format(b"<html></html>", "page.xml")
    with pytest.raises(ValueError, match="neither a Label Studio export"):
        detect_format(b'{"tasks": []}', "x.json")
    with pytest.raises(ValueError, match="neither XML nor JSON"):
        detect_format(b"\x00\x01", "x.bin")

import pytest

from dataset_pipeline.raw_captures import captures_suite, ingest_batch
from dataset_pipeline.validation import validate_table


@pytest.fixture(scope="module")
def captures(demo_batch):
    store, upload = demo_batch
    return ingest_batch(store, upload.batch).captures


def test_demo_captures_meet_the_suite(captures):
    report = validate_table(captures, captures_suite(), name="captures", id_column="image_id")
    assert report.success, report.summary()
    assert report.rows == 16


def test_failures_name_the_offending_images(captures):
    bad = captures.copy()
    bad.loc[3, "lighting"] = "disco"
    bad.loc[5, "sha256"] = bad.loc[6, "sha256"]
    bad.loc[7, "width"] = 20
    bad.loc[8, "scene_id"] = None
    report = validate_table(bad, captures_suite(min_side_px=64), name="captures", id_column="image_id")
    assert not report.success
    failed = {(o.expectation.type, o.expectation.kwargs["column"]): o for o in report.failed}
    assert failed[("ExpectColumnValuesToBeInSet", "lighting")].offending_ids == [bad.loc[3, "image_id"]]
    assert set(failed[("ExpectColumnValuesToBeUnique", "sha256")].offending_ids) == {
        bad.loc[5, "image_id"],
        bad.loc[6, "image_id"],
    }
    assert failed[("ExpectColumnValuesToBeBetween", "width")].offending_ids == [bad.loc[7, "image_id"]]
    assert failed[("ExpectColumnValuesToNotBeNull", "scene_id")].offending_ids == [bad.loc[8, "image_id"]]
    assert len(report.failed) == 4
    assert "disco" in report.summary()


def test_missing_column_is_reported(captures):
    report = validate_table(
        captures.drop(columns=["sha256"]), captures_suite(), name="captures", id_column="image_id"
    )
    assert any(o.error == "column 'sha256' is missing" for o in report.failed)

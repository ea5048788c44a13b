"""The pre-mask stage's task files read back by the importers, the simulated annotators' exports,
the batch import, the corpus and the quality checks."""

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from dataset_pipeline.annotation_corpus import build_corpus, semantic_class_map
from dataset_pipeline.annotation_tasks import image_url_builder, write_annotation_tasks
from dataset_pipeline.demo import simulate_qc_verdicts, simulate_review
from dataset_pipeline.formats.importing import AnnotationImportError, ImageIndex, ImportOptions
from dataset_pipeline.formats.reading import import_export
from dataset_pipeline.layout import annotations_key, captures_key, premasks_key
from dataset_pipeline.masks import decode_mask, encode_mask, mask_to_polygons, rle_iou
from dataset_pipeline.qc_assignments import QcSettings, update_batch_qc
from dataset_pipeline.quality_report import run_quality_checks
from dataset_pipeline.raw_captures import ingest_batch
from dataset_pipeline.reviewed_annotations import import_batch_reviews
from dataset_pipeline.sam2_premasks import premask_batch
from dataset_pipeline.sam2_premasks.classical import ClassicalBackend
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.taxonomy import load_taxonomy
from tests.conftest import copy_store, copy_upload

TAXONOMY = load_taxonomy()


@pytest.fixture(scope="module")
def reviewed(demo_batch, tmp_path_factory):
    source, upload = demo_batch
    store = DatasetStore(str(tmp_path_factory.mktemp("reviewed") / "store"))
    batch = upload.batch
    copy_upload(source, batch, store)
    store.write_bytes(upload.ground_truth_key, source.read_bytes(upload.ground_truth_key))
    store.write_parquet(captures_key(batch), ingest_batch(store, batch).captures)
    store.write_parquet(
        premasks_key(batch), premask_batch(store, batch, ClassicalBackend(), taxonomy=TAXONOMY).table
    )
    write_annotation_tasks(store, batch, TAXONOMY, image_url_builder(store, "local-files"))
    review = simulate_review(store, batch, seed=1)
    return store, batch, review


def _options(store, batch, **kwargs):
    captures = store.read_parquet(captures_key(batch))
    return ImportOptions(
        TAXONOMY,
        images=ImageIndex.from_captures(captures),
        premasks=store.read_parquet(premasks_key(batch)),
        **kwargs,
    )


def test_cvat_task_file_reads_back_as_the_premasks(reviewed):
    store, batch, _ = reviewed
    premasks = store.read_parquet(premasks_key(batch))
    kept = premasks[~premasks.rejected].reset_index(drop=True)
    table = import_export(
        store.read_bytes(f"tasks/{batch}/cvat/annotations.xml"), _options(store, batch)
    ).annotations
    assert len(table) == len(kept)
    assert (table.premask_id.to_numpy() == kept.premask_id.to_numpy()).all()
    assert (table.premask_iou == 1.0).all()
    assert set(table.assistance) == {"sam2-assisted"}  # source="semi-auto"
    for got, want in zip(table.itertuples(), kept.itertuples(), strict=True):
        assert got.rle == want.rle and got.class_id == want.class_id


def test_label_studio_tasks_accepted_unchanged_read_back_as_the_premasks(reviewed):
    store, batch, _ = reviewed
    tasks = json.loads(store.read_bytes(f"tasks/{batch}/label_studio/tasks.json"))
    for task in tasks:  # an annotator submits every prediction as it is
        results = [dict(r, origin="prediction") for p in task.get("predictions", []) for r in p["result"]]
        task["annotations"] = [
            {"id": 1, "completed_by": {"id": 1, "email": "a@x"}, "lead_time": 5.0, "result": results}
        ]
    table = import_export(json.dumps(tasks).encode(), _options(store, batch)).annotations
    premasks = store.read_parquet(premasks_key(batch)).set_index("premask_id")
    assert len(table) == int((~premasks.rejected).sum())
    assert table.premask_id.notna().all() and (table.premask_iou == 1.0).all()
    for row in table.itertuples():
        assert row.rle == premasks.loc[row.premask_id, "rle"]


def test_polygons_read_back_at_iou_098(reviewed):
    """Pre-masks sent as Label Studio polygons (outlines from masks.mask_to_polygons) come back at IoU >= 0.98."""
    store, batch, _ = reviewed
    premasks = store.read_parquet(premasks_key(batch))
    tasks = []
    for row in premasks[~premasks.rejected].itertuples():
        polygons = mask_to_polygons(decode_mask(row.rle, row.height, row.width))
        if len(polygons) != 1:
            continue  # Label Studio holds one outline per polygon result
        points = (np.asarray(polygons[0]).reshape(-1, 2) * [100 / row.width, 100 / row.height]).tolist()
        result = {
            "id": "p",
            "type": "polygonlabels",
            "original_width": row.width,
            "original_height": row.height,
            "value": {"points": points, "polygonlabels": [TAXONOMY.by_id(int(row.class_id)).name]},
        }
        tasks.append({"data": {"image_id": row.image_id}, "annotations": [{"id": 1, "result": [result]}]})
        expected_rle = row.rle
        table = import_export(json.dumps([tasks[-1]]).encode(), _options(store, batch)).annotations
        assert rle_iou(table.rle[0], [expected_rle], row.height, row.width)[0] >= 0.98, row.premask_id
    assert len(tasks) >= 50


def test_simulated_review_imports_with_provenance(reviewed, tmp_path):
    store, batch, review = reviewed
    result = import_batch_reviews(store, batch, TAXONOMY)
    table = result.annotations
    assert len(table) == review.annotations
    assert set(table.annotator_id) == {"ann_a@demo.example", "ann_b@demo.example", "ann_c@demo.example"}
    assert set(table.tool) == {"label_studio", "cvat"}
    assert table.image_id.nunique() == 16  # every image annotated
    assert table[table.tool == "label_studio"].seconds_spent.notna().all()
    assert table[table.tool == "cvat"].seconds_spent.isna().all()  # CVAT XML carries no time
    assisted = table[table.assistance == "sam2-assisted"]
    assert (
        len(assisted) > 0 and assisted.premask_id.notna().all() and assisted.premask_iou.between(0, 1).all()
    )
    assert result.peer_reviews == 0 and table.review_accepted.isna().all()  # no verdict before the QC samples
    # ids are stable: importing again gives the same table
    again = import_batch_reviews(store, batch, TAXONOMY).annotations
    pd.testing.assert_frame_equal(table, again)

    # The QC samples go out, the simulated reviewers return their verdicts, the import applies them.
    local = copy_store(store, DatasetStore(str(tmp_path / "qc")))
    local.write_parquet(annotations_key(batch), table)
    sample = update_batch_qc(local, batch, QcSettings(), datetime(2026, 12, 1, tzinfo=UTC)).assignments
    peer, audit = simulate_qc_verdicts(local, batch, seed=1)
    assert (peer, audit) == ((sample.tier == "peer_review").sum(), (sample.tier == "expert_audit").sum())
    verdicts = import_batch_reviews(local, batch, TAXONOMY)
    assert verdicts.peer_reviews == peer and verdicts.expert_audits == audit
    with_verdicts = verdicts.annotations
    for tier, column in (("peer_review", "review_accepted"), ("expert_audit", "audit_accepted")):
        units = sample[sample.tier == tier][["image_id", "annotator_id"]]
        judged = with_verdicts.merge(units, on=["image_id", "annotator_id"])
        assert len(judged) and judged[column].notna().all()
        assert with_verdicts[column].notna().sum() == len(judged)  # only the sampled work has a verdict
    reviewed_rows = with_verdicts[with_verdicts.review_status == "peer_reviewed"]
    assert len(reviewed_rows) and reviewed_rows.review_accepted.notna().all()


def test_a_malformed_export_leaves_the_batch_table_as_it_was(reviewed, tmp_path):
    store, batch, _ = reviewed
    local = copy_store(store, DatasetStore(str(tmp_path / "copy")))
    good = import_batch_reviews(local, batch, TAXONOMY).annotations
    local.write_parquet(annotations_key(batch), good)
    before = local.read_bytes(annotations_key(batch))
    local.put_upload(
        f"reviews/{batch}/cvat/late-job.xml", b"<annotations><image name='x.jpg' width='1' height='1'>"
    )
    with pytest.raises(AnnotationImportError, match="late-job.xml: document: not well-formed XML"):
        import_batch_reviews(local, batch, TAXONOMY)
    assert local.read_bytes(annotations_key(batch)) == before


def test_corpus_marks_gold_and_quality_passes_on_the_demo(reviewed):
    store, batch, review = reviewed
    store.write_parquet(annotations_key(batch), import_batch_reviews(store, batch, TAXONOMY).annotations)
    corpus = build_corpus(store)
    gold_images = corpus.annotations[corpus.annotations.is_gold].image_id.nunique()
    assert gold_images == review.gold_images
    assert (
        corpus.annotations[corpus.annotations.is_gold].groupby("image_id").annotator_id.nunique() == 3
    ).all()
    report = run_quality_checks(corpus.annotations, corpus.images, TAXONOMY)
    assert report.issues.empty, report.issues.head()
    assert set(report.refinement.annotator_id) == {
        "ann_a@demo.example",
        "ann_b@demo.example",
        "ann_c@demo.example",
    }


def _planted(corpus_annotations: pd.DataFrame, images: pd.DataFrame) -> pd.DataFrame:
    row = corpus_annotations.iloc[0]
    empty = np.zeros((row.height, row.width), bool)
    cable = np.zeros((row.height, row.width), bool)
    cable[100, 50:300] = True  # a 1-pixel-wide cable
    planted = pd.DataFrame(
        [
            row.to_dict() | {"annotation_id": "planted-empty", "rle": encode_mask(empty), "z_order": 90},
            row.to_dict()
            | {"annotation_id": "planted-cable", "rle": encode_mask(cable), "class_id": 5, "z_order": 91},
            row.to_dict() | {"annotation_id": "planted-class", "class_id": 42, "z_order": 92},
        ]
    )
    return pd.concat([corpus_annotations, planted], ignore_index=True)


def test_quality_checks_catch_planted_defects(reviewed):
    store, batch, _ = reviewed
    store.write_parquet(annotations_key(batch), import_batch_reviews(store, batch, TAXONOMY).annotations)
    corpus = build_corpus(store)
    report = run_quality_checks(_planted(corpus.annotations, corpus.images), corpus.images, TAXONOMY)
    by_check = {c: set(report.failed(c).annotation_id) for c in report.issues.check.unique()}
    assert by_check["min_area"] == {"planted-empty"}
    assert by_check["thin_width"] == {"planted-cable"}
    assert by_check["class_ids_valid"] == {"planted-class"}
    assert "obstacle_deformable is 1 px thick, min 2 px" in report.describe("thin_width")
    image_id = corpus.annotations.image_id.iloc[0]
    assert image_id in report.describe("min_area")


def test_semantic_class_map_foreground_wins(reviewed):
    store, batch, _ = reviewed
    table = import_batch_reviews(store, batch, TAXONOMY).annotations
    one = table[
        (table.annotator_id == table.annotator_id.iloc[0]) & (table.image_id == table.image_id.iloc[0])
    ]
    class_map = semantic_class_map(one, 480, 640)
    top = one.sort_values("z_order").iloc[-1]
    assert (class_map[decode_mask(top.rle, 480, 640)] == top.class_id).all()
    assert set(np.unique(class_map)) <= {0, *one.class_id.tolist()}

"""reviewed_annotations, annotation_corpus and quality_report through Dagster; the review sensor; the CLI."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from dagster import (
    AssetKey,
    SensorResult,
    SkipReason,
    asset,
    build_sensor_context,
    instance_for_test,
    materialize,
)

from assets.annotation_corpus import annotation_corpus
from assets.partitions import capture_batches
from assets.quality_report import QUALITY_REPORT_CHECKS, quality_report
from assets.reviewed_annotations import reviewed_annotations
from dataset_pipeline.definitions.jobs import PER_BATCH_STAGES
from dataset_pipeline.definitions.sensors import review_export_sensor
from dataset_pipeline.demo import simulate_review
from dataset_pipeline.layout import annotations_key
from dataset_pipeline.store import DatasetStore
from resources import (
    AgreementRules,
    AnnotationTeam,
    AnnotationToolsResource,
    CaptureRules,
    DatasetStoreResource,
    LabelStudioResource,
    PropagationSettings,
    QualityRules,
    RobotEnvironments,
    Sam2Resource,
    TaxonomyResource,
)
from tests.conftest import copy_upload, stage_assets


@asset(deps=[quality_report])
def downstream_of_quality() -> None:
    """Stands for dataset_splits: must not run when a blocking quality check fails."""


def _resources(store):
    return {
        "dataset_store": DatasetStoreResource(root_url=store.root_url),
        "capture_rules": CaptureRules(),
        "robot_environments": RobotEnvironments(),
        "propagation": PropagationSettings(),
        "taxonomy": TaxonomyResource(),
        "sam2": Sam2Resource(),
        "annotation_tools": AnnotationToolsResource(),
        "label_studio": LabelStudioResource(),  # off: these tests use the files
        "quality_rules": QualityRules(),
        "annotation_team": AnnotationTeam(),
        "agreement_rules": AgreementRules(),
    }


@pytest.fixture(scope="module")
def store_with_reviews(demo_batch, tmp_path_factory):
    source, upload = demo_batch
    store = DatasetStore(str(tmp_path_factory.mktemp("reviews") / "store"))
    copy_upload(source, upload.batch, store)
    store.write_bytes(upload.ground_truth_key, source.read_bytes(upload.ground_truth_key))
    with instance_for_test() as instance:
        instance.add_dynamic_partitions(capture_batches.name, [upload.batch])
        result = materialize(
            stage_assets(PER_BATCH_STAGES),
            partition_key=upload.batch,
            instance=instance,
            resources=_resources(store),
        )
        assert result.success
    simulate_review(store, upload.batch, seed=2)
    return store, upload.batch


def _run_review_and_corpus(store, batch, instance):
    first = materialize(
        [reviewed_annotations],
        partition_key=batch,
        instance=instance,
        resources=_resources(store),
        raise_on_error=False,
    )
    second = materialize(
        [annotation_corpus, quality_report, *QUALITY_REPORT_CHECKS, downstream_of_quality],
        instance=instance,
        resources=_resources(store),
        raise_on_error=False,
    )
    return first, second


def test_review_and_corpus_materialize_with_checks_passing(store_with_reviews):
    store, batch = store_with_reviews
    with instance_for_test() as instance:
        instance.add_dynamic_partitions(capture_batches.name, [batch])
        first, second = _run_review_and_corpus(store, batch, instance)
    assert first.success and second.success
    metadata = first.asset_materializations_for_node("reviewed_annotations")[0].metadata
    assert metadata["annotators"].value == 3 and metadata["export_files"].value == 2
    checks = {e.check_name: e for e in second.get_asset_check_evaluations()}
    blocking = [n for n in checks if n != "qc_refinement_rate"]
    assert len(blocking) == 7 and all(checks[n].passed for n in blocking)
    assert AssetKey("downstream_of_quality") in {
        e.asset_key for e in second.get_asset_materialization_events()
    }
    quality = second.asset_materializations_for_node("quality_report")[0].metadata
    assert quality["worst images"].value.startswith(
        ("![worst images](data:image/png;base64,", "![worst images](data:image/jpeg;base64,")
    )


def test_rematerializing_the_same_reviews_is_idempotent(store_with_reviews):
    """Importing the same exports twice and rebuilding the corpus gives the same tables, byte for
    byte in content, with no annotation twice (exactly-once at the level of the data)."""
    from dataset_pipeline.layout import CORPUS_ANNOTATIONS_KEY, annotations_key

    store, batch = store_with_reviews
    with instance_for_test() as instance:
        instance.add_dynamic_partitions(capture_batches.name, [batch])
        _run_review_and_corpus(store, batch, instance)
        table, corpus = store.read_parquet(annotations_key(batch)), store.read_parquet(CORPUS_ANNOTATIONS_KEY)
        first, second = _run_review_and_corpus(store, batch, instance)
    assert first.success and second.success
    assert store.read_parquet(annotations_key(batch)).equals(table)
    again = store.read_parquet(CORPUS_ANNOTATIONS_KEY)
    assert again.equals(corpus) and again.annotation_id.is_unique


def test_a_planted_defect_blocks_downstream_naming_ids(store_with_reviews, tmp_path):
    store, batch = store_with_reviews
    with instance_for_test() as instance:
        instance.add_dynamic_partitions(capture_batches.name, [batch])
        first, _ = _run_review_and_corpus(store, batch, instance)
        table = store.read_parquet(annotations_key(batch))
        planted = table.iloc[:1].assign(annotation_id="planted-unknown-class", class_id=42, z_order=77)
        store.write_parquet(annotations_key(batch), pd.concat([table, planted], ignore_index=True))
        result = materialize(
            [annotation_corpus, quality_report, *QUALITY_REPORT_CHECKS, downstream_of_quality],
            instance=instance,
            resources=_resources(store),
            raise_on_error=False,
        )
        store.write_parquet(annotations_key(batch), table)  # restore for other tests
    check = next(e for e in result.get_asset_check_evaluations() if e.check_name == "qc_class_ids_valid")
    assert not check.passed
    assert "planted-unknown-class" in check.description and "class id 42" in check.description
    assert AssetKey("downstream_of_quality") not in {
        e.asset_key for e in result.get_asset_materialization_events()
    }


def test_review_sensor_runs_a_batch_once_per_set_of_files(local_store):
    resource = DatasetStoreResource(root_url=local_store.root_url)
    with instance_for_test() as instance:
        instance.add_dynamic_partitions(capture_batches.name, ["b1"])

        def tick(cursor=None):
            return review_export_sensor(
                build_sensor_context(instance=instance, cursor=cursor, resources={"dataset_store": resource})
            )

        assert isinstance(tick(), SkipReason)
        local_store.put_upload("reviews/b1/label_studio/export-1.json", b"[]")
        local_store.put_upload("reviews/unknown-batch/x.json", b"[]")
        first = tick()
        assert isinstance(first, SensorResult)
        assert [r.partition_key for r in first.run_requests] == ["b1"]  # the unknown batch is ignored
        assert "dataset_pipeline/uses-gpu" not in first.run_requests[0].tags  # importing reviews is CPU work
        assert isinstance(tick(first.cursor), SkipReason)  # nothing new
        local_store.put_upload("reviews/b1/cvat/job-2.xml", b"<annotations/>")
        second = tick(first.cursor)
        assert [r.partition_key for r in second.run_requests] == ["b1"]
        assert second.run_requests[0].run_key != first.run_requests[0].run_key


def test_files_imported_already_start_no_second_run(store_with_reviews, tmp_path):
    """The CLI's demo imports its batch's reviews itself; the first tick of `dagster dev` afterwards
    (a sensor without a cursor) must not start review_job again for the same files."""
    source, batch = store_with_reviews
    store = DatasetStore(str(tmp_path / "store"))  # a copy: the shared store is left as it is
    for key in source.list("incoming", recursive=True) + source.list("reviews", recursive=True):
        store.put_upload(key, source.read_bytes(key))
    for key in source.list("tables", recursive=True):
        store.write_bytes(key, source.read_bytes(key))
    resource = DatasetStoreResource(root_url=store.root_url)
    with instance_for_test() as instance:
        instance.add_dynamic_partitions(capture_batches.name, [batch])
        imported = materialize(
            [reviewed_annotations], partition_key=batch, instance=instance, resources=_resources(store)
        )
        assert imported.success

        def tick(cursor=None):
            context = build_sensor_context(
                instance=instance, cursor=cursor, resources={"dataset_store": resource}
            )
            return review_export_sensor(context)

        first = tick()
        assert isinstance(first, SensorResult) and first.run_requests == []  # known: no run
        assert isinstance(tick(first.cursor), SkipReason)
        store.put_upload(f"reviews/{batch}/label_studio/second-export.json", b"[]")  # a new export lands
        second = tick(first.cursor)
        assert [r.partition_key for r in second.run_requests] == [batch]


def test_import_review_cli(store_with_reviews, tmp_path):
    store, batch = store_with_reviews
    cli = Path(sys.executable).with_name("dataset-pipeline")
    export = Path(store.path(f"reviews/{batch}/cvat/job-ann_c-annotations.xml"))
    manifest = Path(store.path(f"incoming/{batch}/manifest.csv"))
    out = tmp_path / "ann.parquet"
    done = subprocess.run(
        [str(cli), "import-review", str(export), "--images", str(manifest), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "per annotator: ann_c@demo.example=" in done.stdout and "per class:" in done.stdout
    table = pd.read_parquet(out)
    assert (
        set(table.annotator_id) == {"ann_c@demo.example"} and table.image_id.str.startswith(f"{batch}/").all()
    )

    bad = tmp_path / "bad.xml"
    bad.write_bytes(export.read_bytes().replace(b'label="container"', b'label="kettle"', 1))
    refused = subprocess.run(
        [
            str(cli),
            "import-review",
            str(bad),
            "--images",
            str(manifest),
            "--out",
            str(tmp_path / "no.parquet"),
        ],
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 1
    assert "refused:" in refused.stderr and "field 'label': unknown label 'kettle'" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (tmp_path / "no.parquet").exists()


def test_guideline_and_qc_stages_run_in_dagster_and_a_bad_rules_file_is_named(store_with_reviews, tmp_path):
    """qc_assignments and its flag check run per batch with numeric trend metadata; the guideline's
    first revision has example pictures; a rules file missing a class fails naming file and class."""
    from assets.annotation_guideline import annotation_guideline
    from assets.qc_assignments import QC_ASSIGNMENTS_CHECKS, qc_assignments
    from dataset_pipeline.annotation_guideline import default_rules_path
    from resources import GuidelineResource, QcRules

    store, batch = store_with_reviews
    resources = _resources(store) | {"qc_rules": QcRules(), "guideline": GuidelineResource()}
    with instance_for_test() as instance:
        instance.add_dynamic_partitions(capture_batches.name, [batch])
        qc = materialize(
            [reviewed_annotations, qc_assignments, *QC_ASSIGNMENTS_CHECKS],
            partition_key=batch,
            instance=instance,
            resources=resources,
        )
        assert qc.success
        metadata = qc.asset_materializations_for_node("qc_assignments")[0].metadata
        assert metadata["peer_sample"].value > 0 and metadata["audit_sample"].value > 0
        assert (
            metadata["pending_verdicts"].value
            == metadata["peer_sample"].value + metadata["audit_sample"].value
        )
        (check,) = qc.get_asset_check_evaluations()
        assert check.check_name == "batch_within_norms" and "pending" in check.description

        guideline = materialize([annotation_guideline], instance=instance, resources=resources)
        metadata = guideline.asset_materializations_for_node("annotation_guideline")[0].metadata
        assert metadata["revision"].value == 1 and metadata["examples"].value > 0
        assert metadata["example crops"].value.startswith("![example crops](data:image/")

        rules = tmp_path / "rules.yaml"
        text = default_rules_path().read_text(encoding="utf-8")
        rules.write_text(text.replace("  human_hand:", "  not_a_class:"))
        bad = materialize(
            [annotation_guideline],
            instance=instance,
            resources=resources | {"guideline": GuidelineResource(rules_path=str(rules))},
            raise_on_error=False,
        )
    assert not bad.success
    (failure,) = [e for e in bad.all_events if e.is_step_failure]
    description = str(failure.step_failure_data.user_failure_data.description)
    assert str(rules) in description and "class 'not_a_class' is not in the taxonomy" in description

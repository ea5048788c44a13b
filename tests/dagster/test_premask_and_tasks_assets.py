"""sam2_premasks and annotation_tasks through Dagster, and the task files read back bit-exact."""

import json

import defusedxml.ElementTree as ET
import numpy as np
import pytest
from dagster import AssetKey, instance_for_test, materialize

from assets import ALL_CHECKS
from assets.partitions import capture_batches
from dataset_pipeline.annotation_tasks import read_work_plan
from dataset_pipeline.definitions.jobs import PER_BATCH_STAGES
from dataset_pipeline.formats.cvat.codec import CvatMask, cvat_to_mask
from dataset_pipeline.formats.label_studio.codec import brush_rle_to_mask
from dataset_pipeline.layout import premasks_key, task_files, team_files
from dataset_pipeline.masks import decode_mask
from resources import (
    AgreementRules,
    AnnotationTeam,
    AnnotationToolsResource,
    CaptureRules,
    DatasetStoreResource,
    LabelStudioResource,
    PropagationSettings,
    RobotEnvironments,
    Sam2Resource,
    TaxonomyResource,
)
from tests.conftest import copy_upload, copy_upload_without_prompts, stage_assets

ROSTER = ["ann_a@example.com", "ann_b@example.com", "ann_c@example.com"]


def _run(store, batch, sam2=None, roster=()):
    resources = {
        "dataset_store": DatasetStoreResource(root_url=store.root_url),
        "capture_rules": CaptureRules(),
        "robot_environments": RobotEnvironments(),
        "propagation": PropagationSettings(),
        "taxonomy": TaxonomyResource(),
        "sam2": sam2 or Sam2Resource(),
        "annotation_tools": AnnotationToolsResource(),
        "label_studio": LabelStudioResource(),  # off: these tests use the files
        "annotation_team": AnnotationTeam(annotators=list(roster)),
        "agreement_rules": AgreementRules(),
    }
    with instance_for_test() as instance:
        instance.add_dynamic_partitions(capture_batches.name, [batch])
        stages = stage_assets(PER_BATCH_STAGES)
        keys = {a.key for a in stages}
        checks = [c for c in ALL_CHECKS if {k.asset_key for k in c.check_keys} <= keys]
        result = materialize(
            [*stages, *checks],
            partition_key=batch,
            instance=instance,
            resources=resources,
            raise_on_error=False,
        )
        return result, {e.check_name: e for e in result.get_asset_check_evaluations()}


@pytest.fixture(scope="module")
def materialized(demo_batch, tmp_path_factory):
    from dataset_pipeline.store import DatasetStore

    source, upload = demo_batch
    store = DatasetStore(str(tmp_path_factory.mktemp("chain") / "store"))
    copy_upload(source, upload.batch, store)
    result, checks = _run(store, upload.batch, roster=ROSTER)
    return store, upload.batch, result, checks


def test_chain_materializes_with_checks_passing(materialized):
    store, batch, result, checks = materialized
    assert result.success
    assert {e.asset_key for e in result.get_asset_materialization_events()} == {
        AssetKey("raw_captures"),
        AssetKey("sam2_premasks"),
        AssetKey("annotation_tasks"),
    }
    assert all(c.passed for c in checks.values()), {k: c.description for k, c in checks.items()}
    metadata = result.asset_materializations_for_node("sam2_premasks")[0].metadata
    assert metadata["backend"].value == "classical"
    assert "no SAM 2 checkpoint_path" in metadata["backend_note"].value
    assert metadata["masks"].value == len(store.read_parquet(premasks_key(batch)))
    assert metadata["overlays"].value.startswith(
        ("![overlays](data:image/png;base64,", "![overlays](data:image/jpeg;base64,")
    )
    assert metadata["masks_per_second"].value > 0


def test_the_team_roster_gets_a_work_plan(materialized):
    """With a roster, annotation_tasks plans who labels what: the first batch's gold goes to the
    rotation's first pair, every image sent is planned, and the UI says so."""
    store, batch, result, _ = materialized
    metadata = result.asset_materializations_for_node("annotation_tasks")[0].metadata
    assert metadata["gold pair"].value == ", ".join(ROSTER[:2])
    plan = read_work_plan(store, batch)
    tasks = json.loads(store.read_bytes(task_files(batch)["label_studio_tasks"]))
    assert plan is not None and set(plan.image_id) == {t["data"]["image_id"] for t in tasks}
    assert set(plan.annotator_id[plan.role == "gold"]) == set(ROSTER[:2])
    assert set(plan.annotator_id[plan.role == "single"]) == set(ROSTER)
    views = json.loads(store.read_bytes(team_files(batch)["label_studio_views"]))
    assert sorted(v["data"]["title"] for v in views) == [f"Labelling {batch}: {p}" for p in ROSTER]


def test_label_studio_tasks_carry_the_premasks_bit_exact(materialized):
    store, batch, _, _ = materialized
    premasks = store.read_parquet(premasks_key(batch)).set_index("premask_id")
    tasks = json.loads(store.read_bytes(f"tasks/{batch}/label_studio/tasks.json"))
    assert len(tasks) == 16
    sent = 0
    for task in tasks:
        assert task["data"]["image"].startswith("/data/local-files/?d=incoming/")
        for prediction in task.get("predictions", []):
            assert prediction["model_version"].startswith("grabcut")
            for result in prediction["result"]:
                assert result["type"] == "brushlabels" and result["value"]["format"] == "rle"
                row = premasks[premasks.image_id == task["data"]["image_id"]]
                decoded = brush_rle_to_mask(
                    result["value"]["rle"], result["original_height"], result["original_width"]
                )
                matches = [
                    pid
                    for pid, r in row.iterrows()
                    if np.array_equal(decode_mask(r.rle, r.height, r.width), decoded)
                ]
                assert len(matches) == 1
                assert not premasks.loc[matches[0], "rejected"]
                sent += 1
    assert sent == int((~premasks.rejected).sum())


def test_cvat_xml_carries_the_premasks_bit_exact(materialized):
    store, batch, _, _ = materialized
    premasks = store.read_parquet(premasks_key(batch))
    kept = premasks[~premasks.rejected]
    root = ET.fromstring(store.read_bytes(f"tasks/{batch}/cvat/annotations.xml"))
    decoded = []
    for image in root.findall("image"):
        for element in image.findall("mask"):
            shape = CvatMask(
                element.get("rle"), *(int(element.get(k)) for k in ("left", "top", "width", "height"))
            )
            decoded.append(cvat_to_mask(shape, int(image.get("height")), int(image.get("width"))))
    assert len(decoded) == len(kept)
    for mask, row in zip(decoded, kept.itertuples(), strict=True):
        assert np.array_equal(mask, decode_mask(row.rle, row.height, row.width))


def test_all_masks_rejected_blocks_the_tasks(demo_batch, local_store):
    source, upload = demo_batch
    copy_upload(source, upload.batch, local_store)
    result, checks = _run(local_store, upload.batch, Sam2Resource(score_threshold=1.01))
    assert not checks["prompted_images_have_kept_premask"].passed
    assert (
        "16 prompted image(s) without a kept pre-mask"
        in checks["prompted_images_have_kept_premask"].description
    )
    assert not checks["rejected_share_acceptable"].passed  # the non-blocking flag
    assert AssetKey("annotation_tasks") not in {
        e.asset_key for e in result.get_asset_materialization_events()
    }


def test_unknown_prompt_class_fails_the_step_with_row_and_column(demo_batch, local_store):
    source, upload = demo_batch
    for key in source.list(f"incoming/{upload.batch}", recursive=True):
        data = source.read_bytes(key)
        if key.endswith("prompts.csv"):
            data = data.replace(b",container,", b",kettle,", 1)
        local_store.put_upload(key, data)
    result, _ = _run(local_store, upload.batch)
    failure = next(e for e in result.all_events if e.is_step_failure and e.step_key == "sam2_premasks")
    message = failure.step_failure_data.user_failure_data.description
    assert "prompts.csv: row" in message and "column 'class_name': unknown class 'kettle'" in message
    assert not local_store.exists(premasks_key(upload.batch))


def test_an_upload_without_prompts_says_plainly_that_no_premask_went_out(demo_batch, local_store):
    """A real upload without prompts.csv got 2,112 automatic segments, none with a class, and tasks with
    no prediction - silently. The materializations and the task files say so, and why."""
    source, upload = demo_batch
    copy_upload_without_prompts(source, upload.batch, local_store)
    result, _ = _run(local_store, upload.batch, Sam2Resource(points_per_side=4))
    assert result.success
    premask_metadata = result.asset_materializations_for_node("sam2_premasks")[0].metadata
    assert premask_metadata["masks"].value > 0 and premask_metadata["masks_for_annotators"].value == 0
    assert "No pre-mask can be sent to annotators" in premask_metadata["for annotators"].value
    assert "no prompts.csv" in premask_metadata["for annotators"].value
    task_metadata = result.asset_materializations_for_node("annotation_tasks")[0].metadata
    assert task_metadata["masks_sent"].value == 0
    assert "No pre-mask was sent" in task_metadata["pre-annotations"].value
    tasks = json.loads(local_store.read_bytes(f"tasks/{upload.batch}/label_studio/tasks.json"))
    assert all(
        "predictions" not in t
        and t["data"]["pre_annotation"].startswith("no pre-mask: no classed pre-mask can be made")
        and "DATASET_PIPELINE_DETECTOR" in t["data"]["pre_annotation"]
        for t in tasks
    )
    xml = local_store.read_bytes(f"tasks/{upload.batch}/cvat/annotations.xml").decode()
    assert "<!-- no pre-mask: no classed pre-mask can be made" in xml.splitlines()[1]
    ET.fromstring(xml.encode())  # still the XML CVAT imports
    assert premask_metadata["detector"].value == "none"
    assert "set detector_path" in premask_metadata["detector_note"].value


def test_with_a_detector_an_upload_without_prompts_gets_classed_premasks(demo_batch, local_store, tmp_path):
    """The user without a detector of her own points the pipeline at an OWLv2 folder: its boxes for the
    taxonomy's prompts give the pre-masks their classes, and they go out in the tasks."""
    from dataset_pipeline.sam2_premasks.detector import random_owl_detector

    folder = tmp_path / "owlv2"
    made = random_owl_detector()
    made.model.save_pretrained(folder)
    made.processor.save_pretrained(folder)
    source, upload = demo_batch
    copy_upload_without_prompts(source, upload.batch, local_store)
    sam2 = Sam2Resource(
        points_per_side=4, detector_path=str(folder), detector_threshold=0.0, detector_max_boxes=3
    )
    result, checks = _run(local_store, upload.batch, sam2)
    assert result.success, {k: c.description for k, c in checks.items()}
    metadata = result.asset_materializations_for_node("sam2_premasks")[0].metadata
    assert metadata["detector"].value == "owlv2" and metadata["detector_version"].value.startswith(
        "owlv2-128px@"
    )
    assert metadata["detector_images"].value == 16 and 16 <= metadata["detector_boxes"].value <= 3 * 16
    per_class = {r.data["class_name"]: r.data for r in metadata["per class"].value.records}
    assert sum(r["detector_boxes"] for r in per_class.values()) == len(
        local_store.read_parquet(premasks_key(upload.batch)).query("prompt_source == 'detector'")
    )
    premasks = local_store.read_parquet(premasks_key(upload.batch))
    sent = int((~premasks.rejected & premasks.class_id.notna()).sum())
    task_metadata = result.asset_materializations_for_node("annotation_tasks")[0].metadata
    assert task_metadata["masks_sent"].value == sent

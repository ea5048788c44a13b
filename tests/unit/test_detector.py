"""Text-prompted boxes → SAM 2 / classical → classed pre-masks: OWLv2 built from its config with random
weights (the real transformers model and its real processor), the taxonomy's prompts as queries."""

import numpy as np
import pytest

from dataset_pipeline.annotation_tasks import NO_CLASSED_PREMASK, no_premask_reason, write_annotation_tasks
from dataset_pipeline.layout import captures_key, premasks_key
from dataset_pipeline.raw_captures import ingest_batch
from dataset_pipeline.sam2_premasks import premask_batch
from dataset_pipeline.sam2_premasks.classical import ClassicalBackend
from dataset_pipeline.sam2_premasks.detector import (
    class_queries,
    class_thresholds,
    random_owl_detector,
    select_detections,
)
from dataset_pipeline.taxonomy import TaxonomyError, load_taxonomy, parse_taxonomy
from tests.conftest import copy_upload_without_prompts


@pytest.fixture(scope="module")
def detector():
    return random_owl_detector(threshold=0.0, max_detections=3)


def _images():
    rng = np.random.default_rng(4)
    return [(rng.random(shape) * 255).astype(np.uint8) for shape in [(96, 160, 3), (120, 80, 3)]]


def test_boxes_match_transformers_own_post_processing(detector):
    """Our device-side preprocessing and box geometry against the processor and
    post_process_object_detection of transformers, on the same images."""
    import torch

    images = _images()
    queries, _ = class_queries(load_taxonomy())
    processed = detector.processor(
        text=[queries] * len(images),
        images=images,
        return_tensors="pt",
        padding="max_length",
        truncation=True,
    )
    ours = detector._pixels(images)  # the processor's own image path, given tensors on the device
    assert ours.shape == processed["pixel_values"].shape
    assert float((ours - processed["pixel_values"]).abs().max()) < 1e-4
    with torch.inference_mode():
        output = detector.model(**processed)
    sides = [(max(i.shape[:2]),) * 2 for i in images]  # OWLv2's boxes are of the padded square
    theirs = detector.processor.image_processor.post_process_object_detection(
        output, threshold=0.0, target_sizes=sides
    )
    boxes, scores = detector.query_scores(images, queries)
    for i, image in enumerate(images):
        height, width = image.shape[:2]
        reference = theirs[i]["boxes"].numpy()
        reference[:, [0, 2]] = reference[:, [0, 2]].clip(0, width)
        reference[:, [1, 3]] = reference[:, [1, 3]].clip(0, height)
        best = scores[i].max(axis=1)
        np.testing.assert_allclose(np.sort(best), np.sort(theirs[i]["scores"].numpy()), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(boxes[i], reference, atol=1e-3)


def test_detections_are_classed_thresholded_and_inside_the_image(detector):
    taxonomy = load_taxonomy()
    found = detector.detect(_images(), taxonomy)
    assert [len(f) for f in found] == [3, 3]  # threshold 0: max_detections boxes each
    foreground = {c.id for c in taxonomy.foreground}
    queries = {q: c.id for c in taxonomy.foreground for q in c.text_queries}
    for image, detections in zip(_images(), found, strict=True):
        height, width = image.shape[:2]
        assert [d.score for d in detections] == sorted((d.score for d in detections), reverse=True)
        for d in detections:
            x0, y0, x1, y1 = d.box
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
            assert d.class_id in foreground and queries[d.query] == d.class_id
    assert detector.model_version == "owlv2-128px@random-weights"


def test_class_threshold_and_suppression_across_classes():
    taxonomy = parse_taxonomy(
        {
            "name": "t",
            "version": 1,
            "classes": [
                {"id": 0, "name": "background", "category": "background", "colour": "#000000"},
                {"id": 1, "name": "mug", "category": "rigid", "colour": "#ff0000", "synonyms": ["a cup"]},
                {
                    "id": 2,
                    "name": "bowl",
                    "category": "rigid",
                    "colour": "#00ff00",
                    "prompts": ["a bowl"],
                    "detection_threshold": 0.9,
                },
            ],
        }
    )
    queries, owners = class_queries(taxonomy)
    assert queries == ["a cup", "a bowl"] and owners.tolist() == [1, 2]
    thresholds = class_thresholds(taxonomy, default=0.3)
    assert thresholds.tolist() == [1.1, 0.3, 0.9]
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [40, 40, 60, 60], [70, 70, 90, 90]], float)
    scores = np.array([[0.5, 0.1], [0.1, 0.95], [0.05, 0.8], [0.4, 0.2]])
    picked = select_detections(boxes, scores, owners, queries, thresholds)
    # box 1 (bowl 0.95) suppresses box 0 (cup 0.5) though their classes differ; box 2's bowl
    # score 0.8 is under the bowl's own threshold 0.9; box 3 passes the default 0.3 as a mug
    assert [(d.class_id, d.box[0], d.query) for d in picked] == [(2, 1.0, "a bowl"), (1, 70.0, "a cup")]


def test_taxonomy_prompt_fields_are_validated():
    base = {"id": 1, "name": "mug", "category": "rigid", "colour": "#ff0000"}
    background = {"id": 0, "name": "background", "category": "background", "colour": "#000000"}
    for bad, field in [({"prompts": [""]}, "prompts"), ({"synonyms": 3}, "synonyms")]:
        with pytest.raises(TaxonomyError, match=f"class 'mug'.*field '{field}'"):
            parse_taxonomy({"name": "t", "version": 1, "classes": [background, {**base, **bad}]})
    with pytest.raises(TaxonomyError, match="detection_threshold"):
        parse_taxonomy(
            {"name": "t", "version": 1, "classes": [background, {**base, "detection_threshold": 2}]}
        )
    packaged = load_taxonomy()
    assert all(c.prompts for c in packaged.foreground)  # the packaged taxonomy has defaults


@pytest.fixture
def unprompted(demo_batch, local_store):
    """Three demo images uploaded without prompts.csv (as the user without a detector uploads)."""
    source, upload = demo_batch
    copy_upload_without_prompts(source, upload.batch, local_store)
    captures = ingest_batch(local_store, upload.batch).captures.head(3)
    local_store.write_parquet(captures_key(upload.batch), captures)
    return local_store, upload.batch, captures


def test_detector_boxes_prompt_classed_premasks_that_reach_the_tasks(unprompted, detector):
    store, batch, captures = unprompted
    taxonomy = load_taxonomy()
    run = premask_batch(store, batch, ClassicalBackend(), taxonomy=taxonomy, detector=detector)
    table = run.table
    assert run.detected_images == 3 and len(run.detections) == 9
    from_detector = table[table.prompt_source == "detector"]
    assert len(from_detector) > 0 and from_detector.class_id.notna().all()
    assert set(from_detector.detector) == {detector.model_version}
    assert set(from_detector.prompt_type) == {"box"}
    # each detector-prompted mask carries its box's class and score, in the box's order
    for image_id, group in from_detector.groupby("image_id"):
        boxes = [d for i, d in run.detections if i == image_id]
        classes = [d.class_id for d in boxes]
        assert set(group.class_id.astype(int)) <= set(classes)
        assert set(group.detector_score) <= {d.score for d in boxes}
    store.write_parquet(premasks_key(batch), table)
    export = write_annotation_tasks(store, batch, taxonomy, image_url=lambda k: k)
    kept = int((~table.rejected & table.class_id.notna()).sum())
    assert export.masks_sent == kept
    if kept:
        assert export.no_premask_reason is None


def test_without_detector_or_prompts_the_reason_says_what_to_configure(unprompted):
    store, batch, _ = unprompted
    run = premask_batch(store, batch, ClassicalBackend(), taxonomy=load_taxonomy())
    assert set(run.table.prompt_source) == {"auto"} and run.detector is None
    assert no_premask_reason(run.table) == NO_CLASSED_PREMASK
    assert "DATASET_PIPELINE_DETECTOR" in NO_CLASSED_PREMASK and "prompts.csv" in NO_CLASSED_PREMASK
    store.write_parquet(premasks_key(batch), run.table)
    export = write_annotation_tasks(store, batch, load_taxonomy(), image_url=lambda k: k)
    assert export.masks_sent == 0
    assert all(
        task["data"]["pre_annotation"] == "no pre-mask: " + NO_CLASSED_PREMASK
        for task in export.label_studio_tasks
    )


def test_detector_folder_round_trip_and_missing_folder(tmp_path, detector):
    from dataset_pipeline.sam2_premasks.detector import OwlDetector

    with pytest.raises(FileNotFoundError, match="no config.json"):
        OwlDetector(str(tmp_path / "nowhere"), device="cpu")
    folder = tmp_path / "owlv2"
    detector.model.save_pretrained(folder)
    detector.processor.save_pretrained(folder)
    loaded = OwlDetector(str(folder), device="cpu", threshold=0.0, max_detections=3)
    assert loaded.model_version.startswith("owlv2-128px@") and "random" not in loaded.model_version
    assert loaded.detect(_images(), load_taxonomy()) == detector.detect(_images(), load_taxonomy())

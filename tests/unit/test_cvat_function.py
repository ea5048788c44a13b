"""The CVAT auto-annotation functions, called the way cvat-sdk's own driver calls them (``annotate_task``:
its context class, then its annotation mapper validating and remapping the shapes onto a task's labels),
with the labels our CVAT task files create."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from cvat_sdk import models
from cvat_sdk.auto_annotation.driver import _AnnotationMapper, _DetectionFunctionContextImpl
from cvat_sdk.auto_annotation.interface import InteractionPrompts
from cvat_sdk.masks import decode_mask
from PIL import Image

from dataset_pipeline.annotation_tasks import NO_CLASSED_PREMASK
from dataset_pipeline.formats.cvat.tasks import labels_json
from dataset_pipeline.interactive.cvat import DetectionFunction, InteractionFunction, create
from dataset_pipeline.interactive.session import InteractiveSession
from dataset_pipeline.sam2_premasks.classical import ClassicalBackend
from dataset_pipeline.sam2_premasks.detector import random_owl_detector
from dataset_pipeline.taxonomy import load_taxonomy

HEIGHT, WIDTH = 120, 160


def _scene() -> tuple[Image.Image, np.ndarray]:
    rng = np.random.default_rng(1)
    image = np.full((HEIGHT, WIDTH, 3), 150, np.uint8) + rng.integers(
        0, 12, (HEIGHT, WIDTH, 3), dtype=np.uint8
    )
    image[40:80, 60:110] = (200, 30, 30)
    truth = np.zeros((HEIGHT, WIDTH), bool)
    truth[40:80, 60:110] = True
    return Image.fromarray(image), truth


def _task_labels(kind: str | None = None) -> list[models.Label]:
    """The labels of a CVAT task made from our labels.json (ids as a server would number them); ``kind``
    overrides their type (a task whose labels are "any" takes polygons)."""
    return [
        models.Label(
            name=label["name"], id=100 + number, type=kind or label["type"], attributes=[], sublabels=[]
        )
        for number, label in enumerate(json.loads(labels_json(load_taxonomy())))
    ]


@pytest.fixture(scope="module")
def detection():
    """SAM 2 with random weights behind the detector's random boxes (GrabCut finds nothing in boxes that
    hold only background, which random boxes mostly do)."""
    from dataset_pipeline.sam2_premasks.sam2 import Sam2Backend

    detector = random_owl_detector(threshold=0.0, max_detections=4, image_size=256)
    session = InteractiveSession(
        Sam2Backend(checkpoint=None, device="cpu", image_size=256), load_taxonomy(), detector=detector
    )
    return DetectionFunction(session)


@pytest.fixture(scope="module")
def expected(detection):
    """The session's own classed masks for the scene: what the function must hand CVAT."""
    image, _ = _scene()
    return detection.session.classed_masks([np.asarray(image)])[0]


def _run(function, conv_mask_to_poly: bool = False, conf_threshold: float | None = None):
    """What annotate_task does for one frame (frame index 3 of the task)."""
    image, _ = _scene()
    shapes = function.detect(
        _DetectionFunctionContextImpl(
            frame_name="scene.png", conf_threshold=conf_threshold, conv_mask_to_poly=conv_mask_to_poly
        ),
        image,
    )
    mapper = _AnnotationMapper(
        logging.getLogger("test"),
        function.spec.labels,
        _task_labels("any" if conv_mask_to_poly else None),
        allow_unmatched_labels=False,
        conv_mask_to_poly=conv_mask_to_poly,
    )
    _, remapped = mapper.validate_and_remap(shapes, 3)
    return shapes, remapped


def test_detection_function_masks_pass_cvat_sdks_own_validation(detection, expected):
    _, remapped = _run(detection)
    taxonomy = load_taxonomy()
    assert len(remapped) == len(expected) > 0
    task_ids = {label.name: label.id for label in _task_labels()}
    for shape, found in zip(remapped, expected, strict=True):
        assert str(shape.type) == "mask" and shape.frame == 3
        assert shape.label_id == task_ids[taxonomy.by_id(found.class_id).name]  # remapped by name
        decoded = decode_mask(shape.points, image_width=WIDTH, image_height=HEIGHT)
        assert np.array_equal(decoded, found.mask)


def test_detection_function_polygons_and_threshold(detection, expected):
    _, polygons = _run(detection, conv_mask_to_poly=True)
    assert polygons and all(str(s.type) == "polygon" and len(s.points) >= 6 for s in polygons)
    scores = [m.detector_score for m in expected]
    _, kept = _run(detection, conf_threshold=0.5)  # CVAT's threshold filters on the detector's score
    assert len(kept) == sum(s >= 0.5 for s in scores) < len(expected)


def test_detection_function_without_a_detector_says_why(caplog):
    function = DetectionFunction(InteractiveSession(ClassicalBackend(), load_taxonomy()))
    with caplog.at_level(logging.WARNING):
        shapes, _ = _run(function)
    assert shapes == [] and NO_CLASSED_PREMASK in caplog.text


class _Prompts(InteractionPrompts):
    def __init__(self, positive, negative=(), box=None):
        self._positive, self._negative, self._box = list(positive), list(negative), box

    @property
    def pos_points(self):
        return self._positive

    @property
    def neg_points(self):
        return self._negative

    @property
    def bounding_box(self):
        return self._box


def test_interaction_function_segments_the_clicked_object():
    function = InteractionFunction(InteractiveSession(ClassicalBackend(), load_taxonomy()))
    image, truth = _scene()
    prepared = function.preprocess_image(None, image)  # what an agent caches per image
    for prompts in (
        _Prompts([(85, 60)]),
        _Prompts([], box=((55, 35), (115, 85))),
        _Prompts([(85, 60)], [(10, 10)]),
    ):
        (shape,) = function.detect(None, prepared, prompts)
        mask = decode_mask(shape.points, image_width=WIDTH, image_height=HEIGHT)
        assert shape.type == "mask" and (mask & truth).sum() / (mask | truth).sum() > 0.8
        assert 0 <= float(shape.attributes[0].value) <= 1
    assert function.detect(None, prepared, _Prompts([], [(10, 10)])) == []


def test_module_is_a_function_for_cvat_cli():
    import dataset_pipeline.interactive.cvat as module

    assert [label.name for label in module.spec.labels] == [c.name for c in load_taxonomy().foreground]
    assert all(label.type == "mask" for label in module.spec.labels)
    with pytest.raises(ValueError, match="mode must be"):
        create(mode="bogus")
    assert isinstance(create(mode="interactive"), InteractionFunction)

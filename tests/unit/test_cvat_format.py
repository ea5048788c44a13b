"""CVAT for images 1.1 mask shapes: cvat-sdk's codec, our XML writer, and their errors."""

import defusedxml.ElementTree as ET
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dataset_pipeline.formats.cvat.codec import CvatMask, CvatMaskError, cvat_to_mask, mask_to_cvat
from dataset_pipeline.formats.cvat.tasks import CvatImage, CvatShape, annotations_xml, labels_json
from dataset_pipeline.taxonomy import load_taxonomy


@settings(max_examples=60, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 30), st.integers(1, 30))))
def test_round_trip_is_bit_exact(mask):
    assume(mask.any())
    encoded = mask_to_cvat(mask)
    assert np.array_equal(cvat_to_mask(encoded, *mask.shape), mask)


def test_known_encoding_of_a_small_mask():
    mask = np.zeros((4, 6), bool)
    mask[1, 3:5] = True
    mask[2, 2:5] = True
    # box x 2..4, y 1..2 (3x2); row-major over the box: 0 1 1 / 1 1 1 -> one 0, five 1s
    assert mask_to_cvat(mask) == CvatMask(rle="1, 5", left=2, top=1, width=3, height=2)


def test_full_image_mask_starts_with_zero_count():
    mask = np.ones((3, 3), bool)
    encoded = mask_to_cvat(mask)
    assert encoded.rle == "0, 9"
    assert np.array_equal(cvat_to_mask(encoded, 3, 3), mask)


def test_empty_mask_has_no_encoding():
    with pytest.raises(CvatMaskError, match="empty mask"):
        mask_to_cvat(np.zeros((3, 3), bool))


@pytest.mark.parametrize(
    "shape, message",
    [
        (CvatMask("1, 5, 9", 2, 1, 3, 2), "add up to 15 pixels; the 3x2 box has 6"),
        (CvatMask("1, 5", 5, 1, 3, 2), "does not fit the 6x4 image"),
        (CvatMask("1, x", 2, 1, 3, 2), "not a comma-separated list of integers"),
        (CvatMask("1, -1, 6", 2, 1, 3, 2), "negative count"),
        (CvatMask("", 2, 1, 0, 2), "is empty"),
    ],
)
def test_bad_masks_give_clear_errors(shape, message):
    with pytest.raises(CvatMaskError, match=message):
        cvat_to_mask(shape, 4, 6)


def test_xml_holds_images_and_decodable_masks():
    taxonomy = load_taxonomy()
    a = np.zeros((20, 30), bool)
    a[5:10, 4:20] = True
    b = np.zeros((20, 30), bool)
    b[12:18, 1:3] = True
    images = [
        CvatImage(
            0, "images/f0.jpg", 30, 20, [CvatShape("target_object", a), CvatShape("gripper", b, z_order=2)]
        ),
        CvatImage(1, "images/f1.jpg", 30, 20, []),
    ]
    root = ET.fromstring(annotations_xml(images, taxonomy, "batch-1"))
    assert root.findtext("version") == "1.1"
    assert [label.findtext("name") for label in root.iter("label")] == [c.name for c in taxonomy.foreground]
    xml_images = root.findall("image")
    assert [(i.get("id"), i.get("name"), i.get("width"), i.get("height")) for i in xml_images] == [
        ("0", "images/f0.jpg", "30", "20"),
        ("1", "images/f1.jpg", "30", "20"),
    ]
    masks = xml_images[0].findall("mask")
    assert [m.get("label") for m in masks] == ["target_object", "gripper"]
    assert [m.get("source") for m in masks] == ["semi-auto", "semi-auto"]
    assert masks[1].get("z_order") == "2"
    for element, expected in zip(masks, [a, b], strict=True):
        shape = CvatMask(
            *(element.get(k) for k in ("rle",)),
            *(int(element.get(k)) for k in ("left", "top", "width", "height")),
        )
        assert np.array_equal(cvat_to_mask(shape, 20, 30), expected)
    assert xml_images[1].findall("mask") == []


def test_labels_json_is_cvat_raw_label_list():
    import json

    labels = json.loads(labels_json(load_taxonomy()))
    assert labels[0] == {"name": "target_object", "color": "#e6194b", "type": "mask", "attributes": []}
    assert len(labels) == 8

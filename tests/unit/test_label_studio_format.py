"""Label Studio brush RLE and task files, checked against label-studio-sdk's own codec output."""

import base64
import json
from pathlib import Path

import defusedxml.ElementTree as ET
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dataset_pipeline.formats.label_studio.codec import (
    BrushRLEError,
    brush_rle_to_mask,
    decode_brush_values,
    mask_to_brush_rle,
)
from dataset_pipeline.formats.label_studio.tasks import labeling_config
from dataset_pipeline.taxonomy import load_taxonomy

VECTORS = json.loads((Path(__file__).parents[1] / "data" / "label_studio_brush_vectors.json").read_text())


def _mask(vector) -> np.ndarray:
    height, width = vector["shape"]
    bits = np.unpackbits(np.frombuffer(base64.b64decode(vector["bits"]), np.uint8))[: height * width]
    return bits.astype(bool).reshape(height, width)


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_encoder_is_byte_identical_to_label_studio_sdk(vector):
    assert mask_to_brush_rle(_mask(vector)) == vector["rle"]


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_decoder_reads_label_studio_sdk_output(vector):
    height, width = vector["shape"]
    assert np.array_equal(brush_rle_to_mask(vector["rle"], height, width), _mask(vector))


@settings(max_examples=60, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 40), st.integers(1, 40))))
def test_round_trip_is_bit_exact(mask):
    assert np.array_equal(brush_rle_to_mask(mask_to_brush_rle(mask), *mask.shape), mask)


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (480, 640), (333, 1)])
@pytest.mark.parametrize("fill", ["empty", "full"])
def test_round_trip_empty_and_full(shape, fill):
    mask = np.zeros(shape, bool) if fill == "empty" else np.ones(shape, bool)
    assert np.array_equal(brush_rle_to_mask(mask_to_brush_rle(mask), *shape), mask)


def test_malformed_streams_give_brush_rle_errors():
    mask = np.zeros((10, 10), bool)
    mask[2:5, 3:9] = True
    rle = mask_to_brush_rle(mask)
    with pytest.raises(BrushRLEError, match="ends early"):
        brush_rle_to_mask(rle[: len(rle) // 2], 10, 10)
    with pytest.raises(BrushRLEError, match="more than the 100"):
        brush_rle_to_mask(rle, 5, 5)  # declares 400 values, the image holds 100
    with pytest.raises(BrushRLEError, match="a 11x10 RGBA image needs 440"):
        brush_rle_to_mask(rle, 10, 11)
    with pytest.raises(BrushRLEError, match="header"):
        decode_brush_values([1, 2, 3])
    with pytest.raises(BrushRLEError, match="byte values"):
        decode_brush_values([1, 2, 300, 4, 5, 6, 7, 8])


def test_labeling_config_lists_every_class_with_its_colour():
    taxonomy = load_taxonomy()
    root = ET.fromstring(labeling_config(taxonomy))
    for tag in ("BrushLabels", "PolygonLabels"):
        (control,) = root.iter(tag)
        assert control.get("toName") == "image"
        labels = {label.get("value"): label.get("background") for label in control.iter("Label")}
        assert labels == {c.name: c.colour for c in taxonomy.foreground}
    (image,) = root.iter("Image")
    assert image.get("value") == "$image"

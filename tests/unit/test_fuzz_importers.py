"""Property-based fuzzing: for any mutated export or RLE string, a clean result or the documented error.

Mutations start from the valid minimal exports of test_importers (CVAT XML, COCO, Label Studio):
byte-level (flip, insert, delete, truncate) and structure-level (a JSON value anywhere replaced
by a hostile one: negative, huge, NaN, wrong type, path traversal). Anything other than a
result or AnnotationImportError (a KeyError, a TypeError, a crash in a C decoder) is a bug.
"""

from __future__ import annotations

import copy
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataset_pipeline.formats.importing import AnnotationImportError
from dataset_pipeline.formats.reading import import_export
from dataset_pipeline.masks import compressed_rle_counts, decode_mask, rle_from_coco
from tests.unit.test_importers import CVAT_XML, batch_images, coco_document, label_studio_export, options

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HOSTILE_VALUES = st.sampled_from(
    [
        None,
        -1,
        0,
        10**12,
        -(10**12),
        1e308,
        float("nan"),
        float("inf"),
        "",
        "x",
        "../../etc/passwd",
        "/etc/passwd",
        [],
        {},
        [[]],
        [1, 2, 3],
        {"a": 1},
        True,
        "0j1",
        "\u0000",
        "é" * 3,
    ]
)
LABEL_MAP = {"mug": "target_object", "table": "support_surface"}


def _import(data: bytes, fmt: str = "auto"):
    try:
        return import_export(
            data, options(images=batch_images(), label_map=LABEL_MAP, source_file="fuzz"), fmt
        )
    except AnnotationImportError as error:
        assert str(error).startswith("fuzz: "), str(error)
        return error


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


def _replace(document, path, value):
    if not path:
        return value
    out = copy.deepcopy(document)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


@st.composite
def byte_mutations(draw, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        position = draw(st.integers(0, max(0, len(out) - 1)))
        if kind == "flip" and out:
            out[position] = draw(st.integers(0, 255))
        elif kind == "insert":
            out[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and out:
            del out[position : position + draw(st.integers(1, 16))]
        elif kind == "truncate":
            del out[position:]
    return bytes(out)


@st.composite
def json_mutations(draw, document) -> bytes:
    paths = list(_paths(document))
    for _ in range(draw(st.integers(1, 3))):
        document = _replace(document, draw(st.sampled_from(paths)), draw(HOSTILE_VALUES))
        paths = list(_paths(document))
    return json.dumps(document).encode()


@FUZZ
@given(byte_mutations(CVAT_XML))
def test_cvat_xml_bytes(data):
    _import(data, "cvat-xml")


@FUZZ
@given(byte_mutations(json.dumps(coco_document()).encode()))
def test_coco_bytes(data):
    _import(data, "coco")


@FUZZ
@given(json_mutations(coco_document()))
def test_coco_structure(data):
    _import(data, "coco")


@FUZZ
@given(byte_mutations(json.dumps(label_studio_export()).encode()))
def test_label_studio_bytes(data):
    _import(data, "label-studio")


@FUZZ
@given(json_mutations(label_studio_export()))
def test_label_studio_structure(data):
    _import(data, "label-studio")


@FUZZ
@given(
    st.binary(max_size=64) | byte_mutations(CVAT_XML) | byte_mutations(json.dumps(coco_document()).encode())
)
def test_format_detection_of_anything(data):
    _import(data)


@FUZZ
@given(
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255), max_size=40),
    st.integers(0, 12),
    st.integers(0, 12),
)
def test_compressed_rle_strings(counts, height, width):
    """Any string as compressed counts: a ValueError, or runs that exactly cover the image."""
    try:
        runs = compressed_rle_counts(counts)
    except ValueError:
        return
    try:
        rle = rle_from_coco({"size": [height, width], "counts": counts}, height, width)
    except ValueError:
        assert sum(runs) != height * width or any(r < 0 for r in runs)
        return
    assert decode_mask(rle, height, width).shape == (height, width)


@FUZZ
@given(st.lists(st.integers(-5, 60), max_size=12), st.integers(0, 8), st.integers(0, 8))
def test_uncompressed_rle_lists(counts, height, width):
    try:
        rle = rle_from_coco({"size": [height, width], "counts": counts}, height, width)
    except ValueError:
        return
    assert sum(counts) == height * width and all(c >= 0 for c in counts)
    assert decode_mask(rle, height, width).sum() == sum(counts[1::2])


@FUZZ
@given(st.lists(st.integers(-3, 300), max_size=40), st.integers(1, 9), st.integers(1, 9))
def test_label_studio_brush_rle_of_anything(rle, height, width):
    """Label Studio's brush RLE (a byte list) from outside: a ValueError, or a mask of the image's size."""
    from dataset_pipeline.formats.label_studio.codec import brush_rle_to_mask

    try:
        mask = brush_rle_to_mask(rle, height, width)
    except ValueError:
        return
    assert mask.shape == (height, width) and mask.dtype == bool

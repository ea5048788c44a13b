"""Our RLE string reader and decoders against pycocotools, bit for bit, on random masks."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from dataset_pipeline.masks import (
    compressed_rle_counts,
    decode_mask,
    decode_mask_box,
    encode_mask,
    paint_class_map,
    rle_boxes,
)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 40),
    st.integers(1, 40),
    st.floats(0.0, 1.0),
    st.integers(0, 2**32 - 1),
)
def test_decode_equals_pycocotools(height, width, density, seed):
    mask = np.random.default_rng(seed).random((height, width)) < density
    rle = encode_mask(mask)
    ours = decode_mask(rle, height, width)
    theirs = mask_utils.decode({"size": [height, width], "counts": rle.encode()}).view(bool)
    assert ours.dtype == bool and ours.shape == (height, width) and ours.flags.f_contiguous
    assert np.array_equal(ours, theirs) and np.array_equal(ours, mask)


def test_long_runs_and_negative_deltas():
    """Large images give multi-character numbers and negative differences between runs."""
    mask = np.zeros((2000, 3000), bool)
    mask[100:1900, 5:2995] = True
    mask[500:510, :] = False
    mask[0, 0] = True
    rle = encode_mask(mask)
    assert np.array_equal(decode_mask(rle, 2000, 3000), mask)
    runs = compressed_rle_counts(rle)
    assert runs.dtype == np.int64 and int(runs.sum()) == 2000 * 3000


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ("0!", "invalid character '!'"),
        ("0é", "invalid character 'é'"),
        ("0h", "ends inside a number"),  # 'h' = 56: continuation bit set on the last character
        ("hhhhhhh0", "at most 7"),
        ("5O", r"negative run \(-1\) at run 1"),  # O = 31: sign bit set, value -1
    ],
)
def test_malformed_strings_are_refused(counts, message):
    with pytest.raises(ValueError, match=message):
        compressed_rle_counts(counts)


def test_runs_that_do_not_cover_the_image_are_refused():
    rle = encode_mask(np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="cover 16 pixels; the 5x4 image has 20"):
        decode_mask(rle, 4, 5)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 30),
    st.integers(1, 30),
    st.floats(0.0, 1.0),
    st.integers(0, 2**32 - 1),
    st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)),
)
def test_decoding_within_a_box_equals_cropping_the_frame(height, width, density, seed, corners):
    """Any box, the mask's tight box among them: the runs over the box's columns give its crop."""
    mask = np.random.default_rng(seed).random((height, width)) < density
    rle = encode_mask(mask)
    xs = sorted(round(c * width) for c in corners[:2])
    ys = sorted(round(c * height) for c in corners[2:])
    tight = tuple(int(v) for v in rle_boxes([height], [width], [rle])[0])
    for x0, y0, x1, y1 in [(xs[0], ys[0], xs[1], ys[1]), tight, (0, 0, width, height)]:
        crop = decode_mask_box(rle, height, width, (x0, y0, x1, y1))
        assert crop.dtype == bool and crop.flags.f_contiguous
        assert np.array_equal(crop, mask[y0:y1, x0:x1])
    outside = np.zeros_like(mask)
    outside[tight[1] : tight[3], tight[0] : tight[2]] = True
    assert not (mask & ~outside).any()  # the tight box holds the whole mask


def test_a_box_outside_the_image_is_refused():
    rle = encode_mask(np.ones((4, 5), bool))
    with pytest.raises(ValueError, match=r"box \(0, 0, 6, 4\) is not inside the 5x4 image"):
        decode_mask_box(rle, 4, 5, (0, 0, 6, 4))


def test_class_map_painted_from_crops_equals_painting_whole_frames():
    """Foreground (higher z_order) wins, ties keep list order; masks given within their boxes."""
    rng = np.random.default_rng(3)
    height, width = 24, 32
    masks = []
    for _ in range(6):
        mask = np.zeros((height, width), bool)
        y, x = rng.integers(0, height - 4), rng.integers(0, width - 4)
        mask[y : y + rng.integers(2, 12), x : x + rng.integers(2, 16)] = True
        masks.append(mask)
    class_ids, z_orders = np.array([1, 2, 3, 4, 5, 6]), np.array([0, 2, 1, 2, 0, 1])
    expected = np.zeros((height, width), np.uint8)
    for index in np.argsort(z_orders, kind="stable"):
        expected[masks[index]] = class_ids[index]
    rles = [encode_mask(m) for m in masks]
    boxes = rle_boxes([height] * 6, [width] * 6, rles)
    crops = [decode_mask_box(rle, height, width, box) for rle, box in zip(rles, boxes, strict=True)]
    painted = paint_class_map(crops, boxes, class_ids, z_orders, height, width)
    assert painted.flags.c_contiguous and np.array_equal(painted, expected)


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 40),
    st.integers(1, 40),
    st.integers(1, 5),
    st.floats(0.0, 1.0),
    st.integers(0, 2**31 - 1),
)
def test_rle_found_by_torch_equals_pycocotools(height, width, count, density, seed):
    """The device-side encoder (used on CUDA) against pycocotools' own, on masks that start or end on,
    are empty, full, or noise."""
    import torch

    from dataset_pipeline.masks import encode_masks_on_device

    masks = np.random.default_rng(seed).random((count, height, width)) < density
    expected = [mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))["counts"].decode() for m in masks]
    assert encode_masks_on_device(torch.from_numpy(masks)) == expected

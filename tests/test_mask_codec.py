"""Our RLE string reader and decoder against pycocotools, bit for bit, on random masks."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from dataset_pipeline.masks import compressed_rle_counts, decode_mask, encode_mask


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

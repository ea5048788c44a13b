"""Regenerate label_studio_brush_vectors.json with label-studio-sdk's own brush codec.

label-studio-sdk cannot be installed beside this project (it downgrades numpy and
OpenCV), so it runs in its own venv:

    python3 -m venv /tmp/lsvenv && /tmp/lsvenv/bin/pip install label-studio-sdk==2.1.2
    /tmp/lsvenv/bin/python tests/data/make_label_studio_brush_vectors.py

Each vector is a mask (its shape and ``bits``: base64 of numpy.packbits of the flat
mask, so the file stays small) and the ``rle`` list that label-studio-sdk's
``mask2rle`` makes of it.
"""

import base64
import json
from pathlib import Path

import numpy as np
from label_studio_sdk import __version__ as sdk_version
from label_studio_sdk.converter.brush import decode_rle, mask2rle


def masks():
    rng = np.random.default_rng(20261127)
    yield "empty 3x5", np.zeros((3, 5), bool)
    yield "full 4x4", np.ones((4, 4), bool)
    yield "single pixel 1x1", np.ones((1, 1), bool)
    yield "odd 7x13 random", rng.random((7, 13)) > 0.5
    square = np.zeros((480, 640), bool)
    square[100:300, 50:400] = True
    yield "rectangle 480x640", square
    ring = np.zeros((97, 131), bool)
    yy, xx = np.mgrid[:97, :131]
    ring[((yy - 48) ** 2 + (xx - 65) ** 2 < 40**2) & ((yy - 48) ** 2 + (xx - 65) ** 2 > 20**2)] = True
    yield "ring 97x131", ring
    big = np.zeros((300, 400), bool)
    big[:, :] = True
    big[150, 10] = False  # runs longer than 2**16 values on both sides
    yield "long runs 300x400", big
    yield "noise 33x47", rng.random((33, 47)) > 0.7


vectors = []
for name, mask in masks():
    rle = [int(v) for v in mask2rle(mask.astype(np.uint8) * 255)]
    back = np.reshape(decode_rle(rle), (mask.shape[0], mask.shape[1], 4))[:, :, 3] > 0
    assert (back == mask).all(), name
    vectors.append(
        {
            "name": name,
            "shape": list(mask.shape),
            "bits": base64.b64encode(np.packbits(mask.ravel())).decode(),
            "rle": rle,
        }
    )
out = Path(__file__).with_name("label_studio_brush_vectors.json")
out.write_text(json.dumps({"label_studio_sdk": sdk_version, "vectors": vectors}))
print(f"wrote {len(vectors)} vectors to {out}")

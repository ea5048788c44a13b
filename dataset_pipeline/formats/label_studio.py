"""Label Studio: brush RLE codec, labeling config and pre-annotated tasks.

**Brush RLE** is Label Studio's own mask encoding (the ``rle`` list of a ``brushlabels``
result with ``"format": "rle"``): the mask as an RGBA image, flattened row-major to
``H * W * 4`` bytes (every channel 255 inside the mask, 0 outside), packed as a bit
stream in the rle-pack layout that Label Studio's front end decodes:

* header: 32 bits value count, 5 bits ``word_size - 1``, 4 x 4 bits ``run_size - 1``;
* then chunks until ``count`` values are out: 1 bit *repeat*, 2 bits index into the four
  run sizes, ``run_size`` bits ``length - 1``, then one word (repeat) or ``length`` words;
* zero bits pad the stream to whole bytes; it travels as a list of byte values.

The encoder picks chunk sizes as label-studio-sdk's ``encode_rle`` does (word size 8,
run sizes 3, 4, 8, 16), so its output is byte-identical to that library's; tests hold
vectors made with label-studio-sdk (tests/data/label_studio_brush_vectors.json). The SDK
itself cannot live in this environment (it downgrades numpy and OpenCV).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

import numpy as np

from dataset_pipeline.taxonomy import Taxonomy

WORD_SIZE = 8
RUN_SIZES = (3, 4, 8, 16)
BRUSH_FROM_NAME = "brush"
POLYGON_FROM_NAME = "polygon"
IMAGE_TO_NAME = "image"


class BrushRLEError(ValueError):
    """A brush RLE stream is malformed or does not fit the image."""


def _runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run lengths and run values of a 1-D array."""
    change = np.flatnonzero(values[1:] != values[:-1]) + 1
    starts = np.concatenate(([0], change))
    lengths = np.diff(np.concatenate((starts, [values.size])))
    return lengths, values[starts]


def encode_brush_values(values: np.ndarray) -> list[int]:
    """Encode a flat uint8 array in Label Studio's brush RLE; returns byte values.

    >>> encode_brush_values(np.zeros(4, np.uint8))
    [0, 0, 0, 4, 57, 27, 252, 96, 0]
    """
    values = np.asarray(values, dtype=np.uint8).ravel()
    bits = [f"{values.size:032b}", f"{WORD_SIZE - 1:05b}", *(f"{s - 1:04b}" for s in RUN_SIZES)]
    if values.size:
        lengths, run_values = _runs(values)
        for length, value in zip(lengths.tolist(), run_values.tolist(), strict=True):
            word = f"{value:08b}"
            if length == 1:
                bits.append("000000" + word)  # a literal chunk of one word
            elif length <= 8:
                bits.append(f"100{length - 1:03b}{word}")
            elif length <= 16:
                bits.append(f"101{length - 1:04b}{word}")
            elif length <= 256:
                bits.append(f"110{length - 1:08b}{word}")
            else:
                while length > 2**16:
                    bits.append(f"111{2**16 - 1:016b}{word}")
                    length -= 2**16
                bits.append(f"111{length - 1:016b}{word}")
    stream = "".join(bits)
    stream += "0" * (8 - len(stream) % 8)  # always pads (a whole zero byte when aligned), as the SDK does
    return list(int(stream, 2).to_bytes(len(stream) // 8, "big"))


def decode_brush_values(rle: Sequence[int], max_values: int | None = None) -> np.ndarray:
    """Decode Label Studio brush RLE bytes to the flat uint8 array they encode.

    Raises :class:`BrushRLEError` for a stream that ends early, has a word size over 8
    bits, or declares more than ``max_values`` values.
    """
    try:
        data = bytes(rle)
    except (TypeError, ValueError) as exc:
        raise BrushRLEError(f"rle must be a list of byte values 0..255 ({exc})") from None
    total_bits = len(data) * 8
    if total_bits < 53:
        raise BrushRLEError(f"rle is {len(data)} bytes, shorter than its 53-bit header")
    position = 0

    def read(width: int) -> int:
        nonlocal position
        stop = position + width
        if stop > total_bits:
            raise BrushRLEError(f"rle ends early: needs bit {stop} of {total_bits}")
        first, last = position >> 3, (stop + 7) >> 3  # only the bytes that hold these bits
        value = (int.from_bytes(data[first:last], "big") >> (last * 8 - stop)) & ((1 << width) - 1)
        position = stop
        return value

    count = read(32)
    word_size = read(5) + 1
    run_sizes = [read(4) + 1 for _ in range(4)]
    if word_size > 8:
        raise BrushRLEError(f"rle word size is {word_size} bits; brush masks use 8")
    if max_values is not None and count > max_values:
        raise BrushRLEError(f"rle declares {count} values, more than the {max_values} the image holds")
    out = np.zeros(count, dtype=np.uint8)
    index = 0
    while index < count:
        repeat = read(1)
        end = index + 1 + read(run_sizes[read(2)])
        if end > count:
            raise BrushRLEError(f"rle run ends at value {end}, past the declared {count}")
        if repeat:
            out[index:end] = read(word_size)
            index = end
        else:
            while index < end:
                out[index] = read(word_size)
                index += 1
    return out


def mask_to_brush_rle(mask: np.ndarray) -> list[int]:
    """Encode a boolean (H, W) mask as a Label Studio brush RLE byte list.

    >>> m = np.zeros((3, 5), bool); m[1, 1:4] = True
    >>> bool((brush_rle_to_mask(mask_to_brush_rle(m), 3, 5) == m).all())
    True
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    return encode_brush_values(np.repeat(mask.astype(np.uint8).ravel() * 255, 4))


def brush_rle_to_mask(rle: Sequence[int], height: int, width: int) -> np.ndarray:
    """Decode a brush RLE byte list to a boolean (height, width) mask (alpha channel > 0)."""
    expected = int(height) * int(width) * 4
    values = decode_brush_values(rle, max_values=expected)
    if values.size != expected:
        raise BrushRLEError(f"rle holds {values.size} values; a {width}x{height} RGBA image needs {expected}")
    return values.reshape(int(height), int(width), 4)[:, :, 3] > 0


# ---------------------------------------------------------------------------------------
# labeling config and tasks


def labeling_config(taxonomy: Taxonomy) -> str:
    """A Label Studio labeling config with BrushLabels and PolygonLabels for every class.

    >>> "<BrushLabels" in labeling_config(__import__("dataset_pipeline.taxonomy").taxonomy.load_taxonomy())
    True
    """
    labels = "\n".join(
        f"    <Label value={quoteattr(c.name)} background={quoteattr(c.colour)}/>"
        for c in taxonomy.foreground
    )
    return (
        f"<View>\n"
        f"  <Header value={quoteattr(f'Segment every object ({taxonomy.tag})')}/>\n"
        f'  <Image name="{IMAGE_TO_NAME}" value="$image" zoom="true" zoomControl="true"/>\n'
        f'  <BrushLabels name="{BRUSH_FROM_NAME}" toName="{IMAGE_TO_NAME}">\n{labels}\n  </BrushLabels>\n'
        f'  <PolygonLabels name="{POLYGON_FROM_NAME}" toName="{IMAGE_TO_NAME}" strokeWidth="2" '
        f'pointSize="small" opacity="0.4">\n{labels}\n  </PolygonLabels>\n'
        f"</View>\n"
    )


@dataclass(frozen=True)
class TaskMask:
    """One pre-mask to send as a prediction."""

    premask_id: str
    class_name: str
    mask: np.ndarray
    score: float


def premask_result_id(premask_id: str) -> str:
    """The short, stable id a pre-mask carries as a prediction result.

    When an annotator starts from a prediction, Label Studio copies its results with their
    ids and sets ``origin`` to ``prediction`` (or ``prediction-changed`` once edited), so
    this id leads back to the pre-mask.

    >>> premask_result_id("b1/images/f0#p3")
    'pm-92a52c5cbf'
    """
    return "pm-" + hashlib.sha1(premask_id.encode("utf-8")).hexdigest()[:10]


def brush_result(item: TaskMask, height: int, width: int) -> dict:
    """One ``brushlabels`` result of a prediction, as Label Studio stores it."""
    return {
        "id": premask_result_id(item.premask_id),
        "type": "brushlabels",
        "from_name": BRUSH_FROM_NAME,
        "to_name": IMAGE_TO_NAME,
        "original_width": int(width),
        "original_height": int(height),
        "image_rotation": 0,
        "origin": "prediction",
        "score": round(float(item.score), 4),
        "value": {"format": "rle", "rle": mask_to_brush_rle(item.mask), "brushlabels": [item.class_name]},
    }


def build_task(
    image_url: str,
    image_id: str,
    height: int,
    width: int,
    masks: Iterable[TaskMask],
    model_version: str,
    meta: dict | None = None,
) -> dict:
    """A Label Studio task: the image, our ids in ``data``, and the pre-masks as one prediction."""
    items = list(masks)
    task: dict = {"data": {"image": image_url, "image_id": image_id, **(meta or {})}}
    if items:
        task["predictions"] = [
            {
                "model_version": model_version,
                "score": round(float(np.mean([m.score for m in items])), 4),
                "result": [brush_result(m, height, width) for m in items],
            }
        ]
    return task


def tasks_json(tasks: list[dict]) -> bytes:
    """The tasks file that Label Studio's import (UI or ``POST /api/projects/{id}/import``) reads."""
    return json.dumps(tasks, separators=(",", ":")).encode("utf-8")

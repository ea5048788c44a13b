"""Label Studio's brush RLE: the mask encoding of a ``brushlabels`` result.

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

from collections.abc import Sequence

import numpy as np

WORD_SIZE = 8
RUN_SIZES = (3, 4, 8, 16)


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

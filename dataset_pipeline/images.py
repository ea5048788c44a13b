"""The image codec every stage reads captures with: decoded whole, so a bad file fails here.

A truncated JPEG often decodes "fine" in a lazy reader and fails, or trains on grey rows,
much later; decoding every pixel once at ingestion (and the same way wherever an image is
read again) makes the quarantine table the only place a bad image is ever met.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from dataset_pipeline.store import DatasetStore

DEFAULT_MAX_PIXELS = 50_000_000


@dataclass(frozen=True)
class DecodedImage:
    """Facts of a fully decoded image."""

    width: int
    height: int
    rgb: np.ndarray


def decode_image(data: bytes, source: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode an image completely (a truncated file fails here, not in training).

    Raises ValueError with ``source`` and the reason for an empty, truncated or
    undecodable file, or one with more than ``max_pixels`` pixels (checked from the
    header, before the pixels are decoded).

    >>> decode_image(b"", "a.jpg")
    Traceback (most recent call last):
    ...
    ValueError: a.jpg: empty file (0 bytes)
    """
    from PIL import Image, UnidentifiedImageError

    # ``max_pixels`` is checked from the header below, before any pixel is decoded; PIL's own fixed
    # bomb limit (which would answer first for huge images, without the configured figure) is off.
    Image.MAX_IMAGE_PIXELS = None
    if not data:
        raise ValueError(f"{source}: empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width <= 0 or height <= 0:
                raise ValueError(f"{source}: invalid size {width}x{height}")
            if width * height > max_pixels:
                raise ValueError(
                    f"{source}: {width}x{height} = {width * height} pixels exceeds the limit of {max_pixels}"
                )
            image.load()
            rgb = np.asarray(image.convert("RGB"))
    except UnidentifiedImageError:
        raise ValueError(f"{source}: not a decodable image") from None
    except Image.DecompressionBombError as exc:
        raise ValueError(f"{source}: refused as a decompression bomb ({exc})") from None
    except (OSError, SyntaxError) as exc:
        raise ValueError(f"{source}: corrupt or truncated image ({exc})") from None
    return DecodedImage(width=width, height=height, rgb=rgb)


def iter_images(store: DatasetStore, captures: pd.DataFrame) -> Iterator[tuple[str, np.ndarray]]:
    """(image_id, RGB array) of each capture row, decoded from the store."""
    for row in captures.itertuples():
        yield str(row.image_id), decode_image(store.read_bytes(str(row.uri)), str(row.uri)).rgb


def thumbnail(rgb: np.ndarray, size: int) -> np.ndarray:
    """The image scaled down to fit ``size`` x ``size`` (aspect kept)."""
    from PIL import Image

    image = Image.fromarray(rgb)
    image.thumbnail((size, size))
    return np.asarray(image)

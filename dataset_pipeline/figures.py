"""Pictures for people: contact sheets and overlays as PNG bytes, and their markdown.

The Dagster UI cannot open paths of the store, so a picture shown there is a small PNG
embedded in markdown as a base64 data URI (kept to a few hundred KB); the full-size
file is written to the store beside it.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np

MAX_EMBEDDED_BYTES = 300_000


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode an RGB (H, W, 3) or grey (H, W) uint8 array as PNG."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def contact_sheet(
    images: Sequence[np.ndarray],
    captions: Sequence[str] = (),
    *,
    columns: int = 6,
    cell: int = 160,
    gap: int = 4,
) -> np.ndarray:
    """Tile images (each fitted into ``cell`` x ``cell``) into one RGB sheet, captions under each.

    >>> sheet = contact_sheet([np.zeros((30, 40, 3), np.uint8)] * 3, ["a", "b", "c"], columns=2, cell=40)
    >>> sheet.shape
    (120, 92, 3)
    """
    from PIL import Image, ImageDraw

    if not images:
        return np.full((cell, cell, 3), 255, np.uint8)
    caption_h = 14 if captions else 0
    rows = (len(images) + columns - 1) // columns
    ncols = min(columns, len(images))
    sheet = Image.new(
        "RGB", (ncols * (cell + gap) + gap, rows * (cell + caption_h + gap) + gap), (255, 255, 255)
    )
    draw = ImageDraw.Draw(sheet)
    for index, array in enumerate(images):
        tile = Image.fromarray(array)
        tile.thumbnail((cell, cell))
        r, c = divmod(index, columns)
        x = gap + c * (cell + gap)
        y = gap + r * (cell + caption_h + gap)
        sheet.paste(tile, (x + (cell - tile.width) // 2, y + (cell - tile.height) // 2))
        if index < len(captions):
            draw.text((x, y + cell), captions[index][-(cell // 6) :], fill=(0, 0, 0))
    return np.asarray(sheet)


def markdown_image(png: bytes, alt: str, *, max_bytes: int = MAX_EMBEDDED_BYTES) -> str:
    """A markdown image with the PNG inline as a data URI, downscaled until under ``max_bytes``."""
    from PIL import Image

    data = png
    while len(data) > max_bytes:
        image = Image.open(io.BytesIO(data))
        image = image.resize((max(1, image.width * 3 // 4), max(1, image.height * 3 // 4)))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
        data = buffer.getvalue()
    return f"![{alt}](data:image/png;base64,{base64.b64encode(data).decode('ascii')})"

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
    """Tile images (each fitted into ``cell`` pixels wide) into one RGB sheet, captions under each.

    >>> sheet = contact_sheet([np.zeros((30, 40, 3), np.uint8)] * 3, ["a", "b", "c"], columns=2, cell=40)
    >>> sheet.shape
    (100, 92, 3)
    """
    from PIL import Image, ImageDraw

    if not images:
        return np.full((cell, cell, 3), 255, np.uint8)
    tiles = []
    for array in images:
        tile = Image.fromarray(array)
        tile.thumbnail((cell, cell * 4))
        tiles.append(tile)
    cell_h = max(t.height for t in tiles)
    caption_h = 14 if captions else 0
    rows = (len(tiles) + columns - 1) // columns
    ncols = min(columns, len(tiles))
    sheet = Image.new(
        "RGB", (ncols * (cell + gap) + gap, rows * (cell_h + caption_h + gap) + gap), (255, 255, 255)
    )
    draw = ImageDraw.Draw(sheet)
    for index, tile in enumerate(tiles):
        r, c = divmod(index, columns)
        x = gap + c * (cell + gap)
        y = gap + r * (cell_h + caption_h + gap)
        sheet.paste(tile, (x + (cell - tile.width) // 2, y + (cell_h - tile.height) // 2))
        if index < len(captions):
            draw.text((x, y + cell_h), captions[index][-(cell // 6) :], fill=(0, 0, 0))
    return np.asarray(sheet)


def spread(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (all of them when n <= k).

    >>> spread(10, 3)
    [0, 4, 9]
    """
    if n <= k:
        return list(range(n))
    return sorted({int(round(i * (n - 1) / (k - 1))) for i in range(k)}) if k > 1 else [0]


def markdown_image(png: bytes, alt: str, *, max_bytes: int = MAX_EMBEDDED_BYTES) -> str:
    """A markdown image with the PNG inline as a data URI, downscaled until under ``max_bytes``."""
    from PIL import Image

    data = png
    while len(data) > max_bytes:
        with Image.open(io.BytesIO(data)) as opened:
            image = opened.resize((max(1, opened.width * 3 // 4), max(1, opened.height * 3 // 4)))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
        data = buffer.getvalue()
    return f"![{alt}](data:image/png;base64,{base64.b64encode(data).decode('ascii')})"


def overlay(
    image: np.ndarray,
    masks: Sequence[np.ndarray],
    colours: Sequence[tuple[int, int, int]],
    *,
    alpha: float = 0.45,
    outline: bool = True,
) -> np.ndarray:
    """Draw boolean masks over an RGB image: a translucent fill and a 1-px outline in each colour.

    >>> img = np.zeros((4, 4, 3), np.uint8); m = np.zeros((4, 4), bool); m[1:3, 1:3] = True
    >>> overlay(img, [m], [(255, 0, 0)], outline=False)[1, 1].tolist()
    [115, 0, 0]
    """
    import cv2

    out = image.astype(np.float32).copy()
    for mask, colour in zip(masks, colours, strict=True):
        out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(colour, np.float32)
    out = out.round().astype(np.uint8)
    if outline:
        for mask, colour in zip(masks, colours, strict=True):
            contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(out, contours, -1, tuple(int(c) for c in colour), 1)
    return out


def distinct_colour(index: int) -> tuple[int, int, int]:
    """A colour for the ``index``-th unlabelled mask (golden-angle hues)."""
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((index * 0.618033988749895) % 1.0, 0.75, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float],
    marks: Sequence[float] = (),
    *,
    title: str = "",
    width: int = 640,
    bar_height: int = 22,
) -> np.ndarray:
    """Horizontal bars in [0, 1] with an optional tick per bar (e.g. a threshold); RGB array.

    Bars at or above their mark are green, below it red; without marks, blue.

    >>> bar_chart(["a", "b"], [0.5, 0.9], [0.8, 0.8]).shape
    (80, 640, 3)
    """
    from PIL import Image, ImageDraw

    left, right, top = 170, 60, 28 if title else 8
    height = top + len(labels) * (bar_height + 6) + 16
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    if title:
        draw.text((8, 8), title, fill=(0, 0, 0))
    span = width - left - right
    for index, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = top + index * (bar_height + 6)
        draw.text((8, y + 5), str(label)[:26], fill=(0, 0, 0))
        mark = marks[index] if index < len(marks) else None
        value = 0.0 if value is None or np.isnan(value) else float(np.clip(value, 0, 1))
        colour = (70, 110, 200) if mark is None else ((60, 160, 80) if value >= mark else (210, 60, 50))
        draw.rectangle([left, y, left + int(span * value), y + bar_height], fill=colour)
        draw.text((left + int(span * value) + 4, y + 5), f"{value:.2f}", fill=(0, 0, 0))
        if mark is not None:
            x = left + int(span * float(mark))
            draw.line([x, y - 2, x, y + bar_height + 2], fill=(0, 0, 0), width=2)
    draw.line([left, height - 12, left + span, height - 12], fill=(120, 120, 120))
    return np.asarray(image)


def confusion_image(cm: np.ndarray, names: Sequence[str], cell: int = 40) -> np.ndarray:
    """A row-normalised confusion matrix as a heat map (rows: truth, columns: prediction); RGB array.

    >>> confusion_image(np.array([[5, 1], [0, 4]]), ["a", "b"]).shape[2]
    3
    """
    from PIL import Image, ImageDraw

    n = len(names)
    label_w, top = 150, 150
    image = Image.new("RGB", (label_w + n * cell + 10, top + n * cell + 10), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros_like(cm, dtype=np.float64), where=rows > 0)
    for i in range(n):
        draw.text((4, top + i * cell + cell // 3), str(names[i])[:22], fill=(0, 0, 0))
        column = Image.new("RGB", (top, 14), (255, 255, 255))
        ImageDraw.Draw(column).text((2, 1), str(names[i])[:22], fill=(0, 0, 0))
        image.paste(column.rotate(90, expand=True), (label_w + i * cell + cell // 3, 0))
        for j in range(n):
            v = float(share[i, j])
            colour = (
                (int(255 * (1 - v)), int(255 * (1 - 0.6 * v)), 255)
                if i == j
                else (255, int(255 * (1 - v)), int(255 * (1 - v)))
            )
            x0, y0 = label_w + j * cell, top + i * cell
            draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=colour, outline=(220, 220, 220))
            if v >= 0.01:
                draw.text((x0 + 6, y0 + cell // 3), f"{v:.2f}", fill=(0, 0, 0))
    return np.asarray(image)

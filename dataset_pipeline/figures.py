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
#: Caption and legend text size in pixels: legible where the UI shows a sheet at its own width.
TEXT_PX = 15


def font(size: int = TEXT_PX):  # -> PIL.ImageFont.FreeTypeFont
    """Pillow's own scalable font (no system font is needed)."""
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def caption_lines(text: str, width_px: int, size: int = TEXT_PX, max_lines: int = 2) -> list[str]:
    """``text`` broken into lines that fit ``width_px`` (at word, dash and underscore boundaries when it
    can), at most ``max_lines``; what still does not fit loses its middle, never its start or end.

    >>> caption_lines("test warehouse_a-e003_f004", 160)
    ['test warehouse_a-', 'e003_f004']
    >>> caption_lines("a" * 60, 160, max_lines=1)[0][:3], caption_lines("a" * 60, 160, max_lines=1)[0][-3:]
    ('aaa', 'aaa')
    """
    face = font(size)
    fits = lambda line: face.getlength(line) <= width_px  # noqa: E731
    lines: list[str] = []
    rest = text
    while rest and len(lines) < max_lines - 1 and not fits(rest):
        cut = len(rest)
        while cut > 1 and not fits(rest[:cut]):
            cut -= 1
        breaks = [i + 1 for i, ch in enumerate(rest[:cut]) if ch in " -_/"]
        cut = breaks[-1] if breaks and breaks[-1] > cut // 3 else cut
        lines.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest and not fits(rest):
        head, tail = rest[: len(rest) // 2], rest[len(rest) // 2 :]
        while (head or tail) and not fits(head + "…" + tail):
            head, tail = (head[:-1], tail) if len(head) >= len(tail) else (head, tail[1:])
        rest = head + "…" + tail
    return [*lines, rest] if rest else lines


def legend(labels: Sequence[str], colours: Sequence[tuple[int, int, int]], width: int) -> np.ndarray:
    """Colour swatches with their names, wrapped to ``width`` pixels: the key under a sheet of overlays.

    >>> legend(["cup", "table"], [(255, 0, 0), (0, 0, 255)], 300).shape
    (28, 300, 3)
    """
    from PIL import Image, ImageDraw

    face, swatch, pad, line_h = font(), 16, 8, 28
    items = [
        (str(label), tuple(int(c) for c in colour)) for label, colour in zip(labels, colours, strict=True)
    ]
    placed, x, y = [], pad, 0
    for label, colour in items:
        item_w = swatch + 6 + int(face.getlength(label)) + 3 * pad
        if x > pad and x + item_w > width:
            x, y = pad, y + line_h
        placed.append((x, y, label, colour))
        x += item_w
    image = Image.new("RGB", (width, (y + line_h) if items else 0), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for x, y, label, colour in placed:
        top = y + (line_h - swatch) // 2
        draw.rectangle([x, top, x + swatch, top + swatch], fill=colour, outline=(60, 60, 60))
        draw.text((x + swatch + 6, top - 1), label, fill=(0, 0, 0), font=face)
    return np.asarray(image)


def with_legend(
    sheet: np.ndarray, labels: Sequence[str], colours: Sequence[tuple[int, int, int]]
) -> np.ndarray:
    """A sheet with its colour key under it (unchanged when there is nothing to name)."""
    return stack(sheet, legend(labels, colours, sheet.shape[1])) if len(labels) else sheet


def stack(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """Two RGB arrays one above the other (the narrower padded with white)."""
    width = max(top.shape[1], bottom.shape[1])
    pad = lambda a: np.pad(a, ((0, 0), (0, width - a.shape[1]), (0, 0)), constant_values=255)  # noqa: E731
    return np.concatenate([pad(top), pad(bottom)])


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
    """Tile images (each fitted into ``cell`` pixels wide) into one RGB sheet, captions under each
    (up to two lines; a caption too long for them loses its middle, never its start).

    >>> sheet = contact_sheet([np.zeros((30, 40, 3), np.uint8)] * 3, ["a", "b", "c"], columns=2, cell=40)
    >>> sheet.shape
    (116, 92, 3)
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
    face = font()
    wrapped = [caption_lines(str(text), cell) for text in captions]
    line_h = TEXT_PX + 3
    caption_h = line_h * max((len(lines) for lines in wrapped), default=0) + 4 if captions else 0
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
        for number, line in enumerate(wrapped[index] if index < len(wrapped) else []):
            draw.text((x, y + cell_h + 2 + number * line_h), line, fill=(0, 0, 0), font=face)
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
    """A markdown image with the picture inline as a data URI, under ``max_bytes``, at its own size
    where it can be: the PNG as it is; else with a 256-colour palette (charts and masks lose
    nothing); else as a JPEG (a sheet of photos: a tenth of its PNG, captions still sharp); only then
    scaled down. Scaling first made the captions of photo sheets unreadable."""
    from PIL import Image

    if len(png) <= max_bytes:
        return _data_uri(png, "png", alt)
    with Image.open(io.BytesIO(png)) as opened:
        rgb = opened.convert("RGB")
    for fmt, image, options in (
        ("png", rgb.quantize(colors=256, method=Image.Quantize.MEDIANCUT), {"optimize": True}),
        ("jpeg", rgb, {"quality": 85}),
    ):
        buffer = io.BytesIO()
        image.save(buffer, format=fmt.upper(), **options)
        if buffer.tell() <= max_bytes:
            return _data_uri(buffer.getvalue(), fmt, alt)
    data = png
    while len(data) > max_bytes:
        with Image.open(io.BytesIO(data)) as opened:
            image = opened.resize((max(1, opened.width * 3 // 4), max(1, opened.height * 3 // 4)))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
        data = buffer.getvalue()
    return _data_uri(data, "png", alt)


def _data_uri(data: bytes, fmt: str, alt: str) -> str:
    return f"![{alt}](data:image/{fmt};base64,{base64.b64encode(data).decode('ascii')})"


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
    value_format: str = "{:.2f}",
    notes: Sequence[str] = (),
) -> np.ndarray:
    """Horizontal bars in [0, 1] with an optional tick per bar (e.g. a threshold); RGB array.

    Bars at or above their mark are green, below it red; without marks, blue. Each bar is written
    as ``value_format`` of its value, followed by its note (a count, say).

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
        note = f" {notes[index]}" if index < len(notes) else ""
        draw.text((left + int(span * value) + 4, y + 5), value_format.format(value) + note, fill=(0, 0, 0))
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

"""Semantic masks as palette PNGs beside the images: ``masks/<split>/<stem>.png``.

One 8-bit palette ("P" mode) PNG per image: the pixel value is the class id (background
0, then 1..N as the taxonomy), the palette holds the taxonomy's colours, so the file opens
coloured in any viewer and loads as class ids in mmsegmentation / torchvision style
loaders (``np.asarray(Image.open(path))``). The images themselves are written once, under
``images/<split>/``, by the release (they are shared by every format).
"""

from __future__ import annotations

import io

import numpy as np

from dataset_pipeline.formats.exporting import ReleaseFolder, validate_by_shard
from dataset_pipeline.formats.release_content import ImageRow, ReleaseContent, file_stem

NAME = "semantic_png"


def mask_file(split: str, image_id: str) -> str:
    return f"masks/{split}/{file_stem(image_id)}.png"


def palette_bytes(content: ReleaseContent) -> list[int]:
    colours = [channel for rgb in content.taxonomy.palette() for channel in rgb]
    return colours + [0] * (768 - len(colours))


def encode_class_map(class_map: np.ndarray, palette: list[int]) -> bytes:
    """A (H, W) uint8 class map as a palette PNG."""
    from PIL import Image

    image = Image.fromarray(class_map.astype(np.uint8), mode="P")
    image.putpalette(palette)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def export_shared(content: ReleaseContent, out: ReleaseFolder) -> list[str]:
    return []


def export_image(content: ReleaseContent, out: ReleaseFolder, row) -> str:
    palette = palette_bytes(content)
    return out.write_bytes(
        mask_file(row.split, row.image_id), encode_class_map(content.class_map(row), palette)
    )


def export(content: ReleaseContent, out: ReleaseFolder) -> list[str]:
    return export_shared(content, out) + [export_image(content, out, row) for row in content.iter_rows()]


def validate(content: ReleaseContent, out: ReleaseFolder) -> list[str]:
    """Each PNG decodes to the corpus class map bit for bit, in palette mode with the taxonomy's colours."""
    return validate_by_shard(validate_release, validate_shard, content, out)


def validate_release(content: ReleaseContent, out: ReleaseFolder) -> list[str]:
    return []  # every file is an image's


def validate_shard(
    content: ReleaseContent, out: ReleaseFolder, split: str, shard: str, rows: list[ImageRow]
) -> list[str]:
    """One shard's PNGs against the corpus class maps."""
    from PIL import Image

    problems: list[str] = []
    palette = palette_bytes(content)[: 3 * len(content.taxonomy.classes)]
    for row in rows:
        name = mask_file(row.split, row.image_id)
        if out.shared(name):
            continue
        try:
            with Image.open(io.BytesIO(out.read_bytes(name))) as image:
                mode, values = image.mode, np.asarray(image)
                image_palette = (image.getpalette() or [])[: len(palette)]
        except (FileNotFoundError, OSError) as exc:
            problems.append(f"{name}: cannot be read ({exc})")
            continue
        if mode != "P" or image_palette != palette:
            problems.append(f"{name}: mode {mode} / palette differ from the taxonomy's colours")
        truth = content.class_map(row)
        if values.shape != truth.shape or not np.array_equal(values, truth):
            problems.append(f"{name}: class ids differ from the corpus class map")
        unknown = sorted(set(np.unique(values).tolist()) - set(content.taxonomy.ids))
        if unknown:
            problems.append(
                f"{name}: class ids {unknown} are not in the taxonomy (0..{len(content.taxonomy.ids) - 1})"
            )
    return problems

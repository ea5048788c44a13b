"""The pictures people read in the UI: captions whole, colour keys, legible embedded previews."""

import numpy as np
import pandas as pd

from dataset_pipeline.dataset_card import area_bins
from dataset_pipeline.figures import (
    MAX_EMBEDDED_BYTES,
    caption_lines,
    contact_sheet,
    font,
    legend,
    markdown_image,
    png_bytes,
    with_legend,
)


def test_a_caption_keeps_its_start_and_end_on_two_lines():
    """ "est warehouse_a-…" was what a test image's caption showed: cut from the left."""
    lines = caption_lines("test warehouse_a-e003_f004", 160)
    assert "".join(lines).replace(" ", "") == "testwarehouse_a-e003_f004" and len(lines) <= 2
    assert all(font().getlength(line) <= 160 for line in lines)
    long = caption_lines("test " + "x" * 200 + " end", 160)
    assert long[0].startswith("test") and long[-1].endswith("end") and "…" in long[-1]


def test_a_legend_shows_every_colour_it_names():
    colours = [(230, 25, 75), (60, 180, 75), (0, 130, 200)]
    strip = legend(["target_object", "support_surface", "container"], colours, 400)
    found = {tuple(int(v) for v in p) for p in strip.reshape(-1, 3)}
    assert set(colours) <= found
    sheet = contact_sheet([np.full((40, 60, 3), 128, np.uint8)] * 2, ["a", "b"], columns=2, cell=60)
    keyed = with_legend(sheet, ["target_object"], colours[:1])
    assert keyed.shape[0] > sheet.shape[0] and (keyed[: sheet.shape[0]] == sheet).all()
    assert with_legend(sheet, [], []) is sheet


def test_an_embedded_photo_sheet_keeps_its_size_where_it_can():
    """Scaling a sheet down until it fitted made its captions unreadable: a sheet of photos too big as a
    PNG is embedded at its own size (as a JPEG); a chart keeps being a PNG."""
    from base64 import b64decode
    from io import BytesIO

    from PIL import Image

    from dataset_pipeline.demo import render_episode

    frames = [frame.image for frame in render_episode(0, "daylight", 6, seed=0)]
    sheet = contact_sheet(frames, [f"kitchen_a-e000_f{i:03d}" for i in range(6)], columns=3, cell=320)
    png = png_bytes(sheet)
    assert len(png) > MAX_EMBEDDED_BYTES  # a photo sheet's PNG is too big as it is
    text = markdown_image(png, "sheet")
    data = b64decode(text.split("base64,", 1)[1].rstrip(")"))
    with Image.open(BytesIO(data)) as embedded:
        assert len(data) <= MAX_EMBEDDED_BYTES and embedded.size == (sheet.shape[1], sheet.shape[0])
    chart = png_bytes(np.full((200, 300, 3), 255, np.uint8))
    assert markdown_image(chart, "chart").startswith("![chart](data:image/png;base64,")


def test_the_area_histogram_is_a_share_of_all_masks():
    areas = pd.DataFrame({"area_px": [12, 15, 300, 320, 340, 5000, 5200, 80000]})
    shares, counts, labels = area_bins(areas, bins=6)
    assert shares.sum() == 1.0 and counts.sum() == 8
    assert (shares == counts / 8).all() and len(labels) == len(shares)

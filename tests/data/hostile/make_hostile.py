"""Writes the hostile-input corpus next to this file (deterministic; the outputs are committed).

    .venv/bin/python tests/data/hostile/make_hostile.py

Each file is one attack or breakage an export, archive, image or manifest can carry; what
the pipeline must answer for each is in tests/test_hostile_inputs.py.
"""

from __future__ import annotations

import io
import json
import stat
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parents[2]))  # the repository root
from tests.unit.test_importers import CVAT_XML, coco_document, label_studio_export  # noqa: E402

COCO = json.dumps(coco_document()).encode()


def coco_with(change) -> bytes:
    document = coco_document()
    change(document)
    return json.dumps(document).encode()


def label_studio_with(change) -> bytes:
    document = label_studio_export()
    change(document)
    return json.dumps(document).encode()


def zip_of(members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return buffer.getvalue()


def png(width: int, height: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (width, height)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def jpeg() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (120, 30, 200)).save(buffer, format="JPEG")
    return buffer.getvalue()


FILES: dict[str, bytes] = {
    "cvat_xxe_external_entity.xml": b'<?xml version="1.0"?><!DOCTYPE annotations [<!ENTITY xxe SYSTEM '
    b'"file:///etc/passwd">]><annotations><version>&xxe;</version></annotations>',
    "cvat_billion_laughs.xml": b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'.encode()
        for i in range(1, 10)
    )
    + b"]><annotations>&lol9;</annotations>",
    "cvat_truncated.xml": CVAT_XML[: len(CVAT_XML) * 2 // 3],
    "cvat_utf16_declared_utf8.xml": CVAT_XML.decode().encode("utf-16"),
    "cvat_unknown_encoding.xml": CVAT_XML.replace(b'encoding="utf-8"', b'encoding="klingon-8"'),
    "cvat_polygon_nan.xml": CVAT_XML.replace(b'points="4.0,0.0;', b'points="nan,0.0;'),
    "cvat_polygon_outside_image.xml": CVAT_XML.replace(b'points="4.0,0.0;', b'points="4000.0,0.0;'),
    "cvat_rle_overruns_box.xml": CVAT_XML.replace(b'rle="2, 3, 3, 3, 1"', b'rle="2, 3, 3, 3, 900"'),
    "cvat_image_path_traversal.xml": CVAT_XML.replace(b'name="images/f0.jpg"', b'name="../../etc/passwd"'),
    "cvat_negative_size.xml": CVAT_XML.replace(b'width="8" height="6"', b'width="-8" height="6"'),
    "cvat_label_not_in_taxonomy.xml": CVAT_XML.replace(b'label="container"', b'label="teapot"'),
    "coco_truncated.json": COCO[: len(COCO) // 2],
    "coco_latin1_bytes.json": COCO.replace(b'"coco_person"', b'"caf\xe9"'),
    "coco_file_name_traversal.json": coco_with(
        lambda d: d["images"][0].update(file_name="../../../etc/passwd")
    ),
    "coco_file_name_absolute.json": coco_with(lambda d: d["images"][0].update(file_name="/etc/passwd")),
    "coco_rle_overruns_image.json": coco_with(
        lambda d: d["annotations"][1].update(segmentation={"size": [6, 8], "counts": [0, 6, 4000]})
    ),
    "coco_negative_size.json": coco_with(lambda d: d["images"][0].update(width=-8)),
    "coco_huge_size.json": coco_with(lambda d: d["images"][0].update(width=10**9, height=10**9)),
    "coco_polygon_infinite.json": COCO.replace(
        b"[[0, 0, 4, 0, 4, 3, 0, 3]]", b"[[0, 0, 1e999, 0, 4, 3, 0, 3]]"
    ),
    "coco_category_not_in_taxonomy.json": coco_with(lambda d: d["categories"][0].update(name="teapot")),
    "label_studio_truncated.json": json.dumps(label_studio_export()).encode()[:-40],
    "label_studio_label_not_in_taxonomy.json": label_studio_with(
        lambda d: d[0]["annotations"][0]["result"][0]["value"].update(polygonlabels=["teapot"])
    ),
    "label_studio_brush_overruns.json": label_studio_with(
        lambda d: d[1]["annotations"][0]["result"][0]["value"].update(
            rle=[0, 0, 0, 192, 255, 255, 255, 255] * 8
        )
    ),
    "label_studio_negative_size.json": label_studio_with(
        lambda d: d[0]["annotations"][0]["result"][0].update(original_width=-8)
    ),
    "zip_slip.zip": zip_of({"annotations.xml": CVAT_XML, "../../../../tmp/evil.xml": CVAT_XML}),
    "zip_absolute_member.zip": zip_of({"/tmp/evil.json": COCO}),
    "zip_symlink_member.zip": zip_of(
        {"annotations.xml": CVAT_XML}, symlinks={"images/link.jpg": "/etc/passwd"}
    ),
    "zip_bomb.zip": zip_of({"annotations.xml": b"<annotations>" + b" " * (64 * 2**20) + b"</annotations>"}),
    "zip_truncated.zip": zip_of({"annotations.xml": CVAT_XML})[:-30],
    "zip_without_export.zip": zip_of({"images/f0.jpg": jpeg()}),
    "image_empty.jpg": b"",
    "image_truncated.jpg": jpeg()[:200],
    "image_not_an_image.jpg": b"GIF89a this is text",
    "image_20000x20000.png": png(20000, 20000),
}


if __name__ == "__main__":
    for name, data in FILES.items():
        (HERE / name).write_bytes(data)
    print(f"wrote {len(FILES)} files into {HERE}")

"""Importers on hand-written minimal files with known masks, third-party fixtures, and malformed input."""

import json
from pathlib import Path

import numpy as np
import pytest

from dataset_pipeline.formats.importing import AnnotationImportError, ImageIndex, ImageRef, ImportOptions
from dataset_pipeline.formats.reading import detect_format, import_export
from dataset_pipeline.masks import decode_mask
from dataset_pipeline.taxonomy import load_taxonomy

DATA = Path(__file__).parents[1] / "data"
TAXONOMY = load_taxonomy()


def options(**kwargs) -> ImportOptions:
    return ImportOptions(TAXONOMY, source_file=kwargs.pop("source_file", "export"), **kwargs)


def batch_images() -> ImageIndex:
    return ImageIndex(
        [(ImageRef("b1/images/f0", 6, 8), "images/f0.jpg"), (ImageRef("b1/images/f1", 6, 8), "images/f1.jpg")]
    )


CVAT_XML = b"""<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <job><id>7</id><updated>2026-11-25 10:00:00+00:00</updated>
      <assignee><username>maya</username><email>maya@example.com</email></assignee></job>
  </meta>
  <image id="0" name="images/f0.jpg" width="8" height="6">
    <mask label="target_object" source="manual" occluded="0" rle="2, 3, 3, 3, 1" left="1" top="1" width="4" height="3" z_order="2"></mask>
    <polygon label="container" source="manual" occluded="1" points="4.0,0.0;8.0,0.0;8.0,6.0;4.0,6.0" z_order="1"></polygon>
    <box label="gripper" source="manual" occluded="0" xtl="0" ytl="0" xbr="2" ybr="2" z_order="0"></box>
    <points label="gripper" points="1,1" z_order="0"></points>
  </image>
</annotations>
"""


def test_cvat_xml_masks_polygons_and_provenance():
    result = import_export(CVAT_XML, options(images=batch_images()))
    table = result.annotations
    assert result.format == "cvat-xml"
    assert list(table.class_id) == [1, 3]
    mask = decode_mask(table.rle[0], 6, 8)
    expected = np.zeros((6, 8), bool)
    # box x 1..4, y 1..3 (4x3), row-major: 2 zeros, 3 ones, 3 zeros, 3 ones, rest zeros (1 left)
    flat = np.array([0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0], bool).reshape(3, 4)
    expected[1:4, 1:5] = flat
    assert np.array_equal(mask, expected)
    polygon = decode_mask(table.rle[1], 6, 8)
    assert polygon[:, 4:].all() and not polygon[:, :4].any()  # x 4..8 filled, as COCO rasterizes
    assert set(table.annotator_id) == {"maya"}
    assert list(table.z_order) == [2, 1]
    assert table.created_at[0].isoformat() == "2026-11-25T10:00:00+00:00"
    assert table.seconds_spent.isna().all() and set(table.tool) == {"cvat"}
    assert set(table.assistance) == {"manual"}
    assert len(result.skipped) == 2  # the box and the points


def test_cvat_boxes_become_masks_when_configured():
    table = import_export(CVAT_XML, options(images=batch_images(), boxes_as_masks=True)).annotations
    assert list(table.class_id) == [1, 3, 7]
    assert decode_mask(table.rle[2], 6, 8)[0:2, 0:2].all()


def coco_document() -> dict:
    return {
        "info": {"contributor": "coco_person", "date_created": "2026-11-24T08:00:00Z"},
        "images": [{"id": 1, "file_name": "images/f1.jpg", "width": 8, "height": 6}],
        "categories": [{"id": 11, "name": "mug"}, {"id": 12, "name": "table"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 11,
                "iscrowd": 0,
                "segmentation": [[0, 0, 4, 0, 4, 3, 0, 3]],
            },
            # uncompressed RLE (column-major counts): a full first column (6 px) then nothing
            {
                "id": 2,
                "image_id": 1,
                "category_id": 12,
                "iscrowd": 1,
                "segmentation": {"size": [6, 8], "counts": [0, 6, 42]},
            },
        ],
    }


def test_coco_polygons_and_uncompressed_rle_with_label_map():
    data = json.dumps(coco_document()).encode()
    result = import_export(
        data, options(images=batch_images(), label_map={"mug": "target_object", "table": "support_surface"})
    )
    table = result.annotations
    assert result.format == "coco"
    assert list(table.class_id) == [1, 2]
    assert decode_mask(table.rle[0], 6, 8)[0:3, 0:4].all()
    column = decode_mask(table.rle[1], 6, 8)
    assert column[:, 0].all() and column.sum() == 6
    assert set(table.annotator_id) == {"coco_person"}


def label_studio_export() -> list:
    vectors = json.loads((DATA / "label_studio_brush_vectors.json").read_text())["vectors"]
    return [
        {
            "id": 5,
            "data": {"image": "/data/local-files/?d=incoming/b1/images/f0.jpg"},
            "annotations": [
                {
                    "id": 50,
                    "completed_by": {"id": 3, "email": "ann@example.com"},
                    "created_at": "2026-11-25T09:30:00.000Z",
                    "lead_time": 30.0,
                    "was_cancelled": False,
                    "result": [
                        {
                            "id": "r1",
                            "type": "polygonlabels",
                            "original_width": 8,
                            "original_height": 6,
                            "value": {
                                "points": [[0, 0], [50, 0], [50, 50], [0, 50]],
                                "polygonlabels": ["gripper"],
                            },
                        },
                        {
                            "id": "r2",
                            "type": "rectanglelabels",
                            "original_width": 8,
                            "original_height": 6,
                            "value": {},
                        },
                    ],
                },
                {"id": 51, "completed_by": 4, "was_cancelled": True, "result": []},
            ],
        },
        {
            "id": 6,
            "data": {"image": "images/f1.jpg"},
            "annotations": [
                {
                    "id": 60,
                    "completed_by": 9,
                    "created_at": "2026-11-25T09:40:00Z",
                    "lead_time": 12,
                    "result": [
                        {
                            "id": "r3",
                            "type": "brushlabels",
                            "original_width": 8,
                            "original_height": 6,
                            # a brush mask of a full 6x8 image, made by label-studio-sdk's own encoder
                            "value": {
                                "format": "rle",
                                "rle": _full_mask_rle(vectors),
                                "brushlabels": ["human_hand"],
                            },
                        }
                    ],
                    "reviews": [{"accepted": False}],
                }
            ],
        },
    ]


def _full_mask_rle(vectors) -> list[int]:
    from dataset_pipeline.formats.label_studio.codec import mask_to_brush_rle

    full_4x4 = next(v for v in vectors if v["name"] == "full 4x4")
    assert mask_to_brush_rle(np.ones((4, 4), bool)) == full_4x4["rle"]  # our encoder = the SDK's
    return mask_to_brush_rle(np.ones((6, 8), bool))


def test_label_studio_polygons_brushes_and_provenance():
    result = import_export(json.dumps(label_studio_export()).encode(), options(images=batch_images()))
    table = result.annotations
    assert result.format == "label-studio"
    assert list(table.class_id) == [7, 8]
    assert list(table.image_id) == ["b1/images/f0", "b1/images/f1"]
    assert decode_mask(table.rle[0], 6, 8)[0:3, 0:4].all()  # 50% x 50% of 8x6
    assert decode_mask(table.rle[1], 6, 8).all()
    assert list(table.annotator_id) == ["ann@example.com", "ls-user-9"]
    assert list(table.seconds_spent) == [30.0, 12.0]
    assert list(table.review_status) == ["unreviewed", "peer_reviewed"]
    assert table.review_accepted[1] is np.False_ or table.review_accepted[1] == False  # noqa: E712
    assert any("cancelled" in s for s in result.skipped) and any(
        "rectanglelabels" in s for s in result.skipped
    )


def test_a_mask_kept_from_the_ml_backends_click_is_sam2_assisted():
    from dataset_pipeline.formats.label_studio.tasks import INTERACTIVE_RESULT_PREFIX

    export = label_studio_export()
    export[1]["annotations"][0]["result"][0]["id"] = INTERACTIVE_RESULT_PREFIX + "0123456789"
    table = import_export(json.dumps(export).encode(), options(images=batch_images())).annotations
    assert list(table.assistance) == ["manual", "sam2-assisted"]


def test_third_party_fixtures():
    coco = import_export(
        (DATA / "fixtures" / "coco_instances_train.json").read_bytes(), options(label_map={"b": "container"})
    )
    assert coco.annotations.empty and coco.skipped == ["annotations[0] (id 1): no segmentation (a box only)"]
    ls = import_export(
        (DATA / "fixtures" / "label_studio_export.json").read_bytes(),
        options(label_map={"polygon_label": "container"}),
    )
    assert len(ls.annotations) == 1 and len(ls.skipped) == 3  # rectangle and two keypoints
    with pytest.raises(
        AnnotationImportError, match=r"image 'img1.jpg' \(#1\) <polygon> #0, field 'label': missing label"
    ):
        import_export(
            (DATA / "fixtures" / "cvat_for_images_train.xml").read_bytes(),
            options(label_map={"label1": "gripper", "label2": "container"}),
        )


@pytest.mark.parametrize(
    "data, fmt, message",
    [
        (CVAT_XML[: len(CVAT_XML) // 2], "cvat-xml", "not well-formed XML"),
        (
            b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><annotations>&x;</annotations>',
            "cvat-xml",
            "refused unsafe XML",
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY lol "lol"><!ENTITY l2 "&lol;&lol;&lol;">]><annotations>&l2;</annotations>',
            "cvat-xml",
            "refused unsafe XML",
        ),
        (
            CVAT_XML.replace(b'label="container"', b'label="teapot"'),
            "cvat-xml",
            "field 'label': unknown label 'teapot'; known labels: target_object",
        ),
        (
            CVAT_XML.replace(b'points="4.0,0.0;8.0,0.0;8.0,6.0;4.0,6.0"', b'points="4.0,0.0;8.0,0.0"'),
            "cvat-xml",
            "field 'points': polygon 0 has 2 point",
        ),
        (
            CVAT_XML.replace(b'rle="2, 3, 3, 3, 1"', b'rle="2, 3, 3, 3, 9"'),
            "cvat-xml",
            "field 'rle': rle counts add up to 20 pixels; the 4x3 box has 12",
        ),
        (
            CVAT_XML.replace(b'name="images/f0.jpg"', b'name="images/elsewhere.jpg"'),
            "cvat-xml",
            "field 'name': image 'images/elsewhere.jpg' is not in the batch",
        ),
        (CVAT_XML.replace(b'points="4.0,0.0;', b'points="nan,0.0;'), "cvat-xml", "NaN or infinite"),
        (CVAT_XML.replace(b'points="4.0,0.0;', b'points="400.0,0.0;'), "cvat-xml", "outside the 8x6 image"),
        (json.dumps(label_studio_export())[:-40].encode(), "label-studio", "not valid JSON"),
    ],
)
def test_malformed_input_names_file_record_and_field(data, fmt, message):
    with pytest.raises(AnnotationImportError) as error:
        import_export(data, options(images=batch_images(), source_file="reviews/b1/x"), fmt)
    assert "reviews/b1/x: " in str(error.value)
    assert message in str(error.value)


@pytest.mark.parametrize(
    "segmentation, message",
    [
        ({"size": [6, 8], "counts": [0, 6, 43]}, "RLE runs cover 49 pixels; the 8x6 image has 48"),
        ({"size": [6, 9], "counts": [0, 6, 48]}, "is not the image's [height, width]"),
        ({"size": [6, 8], "counts": "0j1"}, "RLE runs cover"),
        ([[0, 0, 1, 1]], "at least 3 are needed"),
    ],
)
def test_coco_bad_segmentations(segmentation, message):
    document = coco_document()
    document["annotations"][1]["segmentation"] = segmentation
    with pytest.raises(
        AnnotationImportError, match=r"annotations\[1\] \(id 2\), field 'segmentation'"
    ) as error:
        import_export(
            json.dumps(document).encode(),
            options(images=batch_images(), label_map={"mug": "target_object", "table": "support_surface"}),
        )
    assert message in str(error.value)


def test_label_map_targets_must_be_classes():
    with pytest.raises(ValueError, match="label map targets must be taxonomy classes"):
        options(label_map={"mug": "cup"})


def test_format_detection():
    assert detect_format(CVAT_XML) == "cvat-xml"
    assert detect_format(json.dumps(label_studio_export()).encode()) == "label-studio"
    assert detect_format(json.dumps(coco_document()).encode()) == "coco"
    cvat_coco = coco_document() | {"info": {"description": "exported from CVAT"}}
    assert detect_format(json.dumps(cvat_coco).encode()) == "cvat-coco"
    with pytest.raises(ValueError, match="neither XML nor JSON"):
        detect_format(b"\x00\x01garbage")

"""`dataset-pipeline import-review` in process: label aliases, refusals, the table it writes."""

import json

import pandas as pd
import pytest

from dataset_pipeline.cli import main
from tests.unit.test_importers import coco_document


@pytest.fixture
def lane_and_road(tmp_path):
    """A COCO export whose two categories are named as another team's tool names them."""
    document = coco_document()
    document["categories"] = [{"id": 11, "name": "lane"}, {"id": 12, "name": "road"}]
    path = tmp_path / "instances_default.json"
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize(
    "flags",
    [
        ["--label-map", "lane=support_surface", "--label-map", "road=support_surface"],  # repeated flags
        ["--label-map", "lane=support_surface", "road=support_surface"],  # pairs after one flag
    ],
)
def test_label_map_pairs_accumulate_in_both_forms(lane_and_road, tmp_path, flags, capsys):
    out = tmp_path / "annotations.parquet"
    assert main(["import-review", str(lane_and_road), *flags, "--out", str(out)]) == 0
    table = pd.read_parquet(out)
    assert sorted(table.class_id.tolist()) == [2, 2]  # both labels mapped to support_surface
    assert "support_surface=2" in capsys.readouterr().out


def test_an_unmapped_label_is_refused_listing_the_aliases_given(lane_and_road, tmp_path, capsys):
    out = tmp_path / "annotations.parquet"
    assert (
        main(["import-review", str(lane_and_road), "--label-map", "lane=support_surface", "--out", str(out)])
        == 1
    )
    error = capsys.readouterr().err
    assert "unknown label 'road'" in error and "'lane': 'support_surface'" in error
    assert not out.exists()


def test_a_file_name_leaving_the_batch_never_becomes_an_image_id(tmp_path, capsys):
    document = coco_document()
    document["images"][0]["file_name"] = "../../../../etc/passwd"
    path = tmp_path / "instances_default.json"
    path.write_text(json.dumps(document))
    out = tmp_path / "annotations.parquet"
    code = main(
        [
            "import-review",
            str(path),
            "--label-map",
            "mug=container",
            "table=support_surface",
            "--out",
            str(out),
        ]
    )
    assert code == 1 and not out.exists()
    error = capsys.readouterr().err
    assert (
        f"{path}: images[0], field 'file_name': image '../../../../etc/passwd' leaves the batch folder"
        in error
    )

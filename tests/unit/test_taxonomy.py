from pathlib import Path

import pytest
import yaml

from dataset_pipeline.taxonomy import DEFAULT_THRESHOLDS, TaxonomyError, load_taxonomy, parse_taxonomy

EXPECTED_NAMES = [
    "background",
    "target_object",
    "support_surface",
    "container",
    "obstacle_rigid",
    "obstacle_deformable",
    "robot_arm",
    "gripper",
    "human_hand",
]


def test_default_taxonomy_is_the_tabletop_one():
    tax = load_taxonomy()
    assert tax.names == EXPECTED_NAMES
    assert tax.ids == list(range(9))
    assert tax.tag == "tabletop_manipulation@v1"
    for cls in tax.foreground:
        assert cls.agreement_threshold == DEFAULT_THRESHOLDS[cls.category]
        assert cls.min_width_px >= 1
        assert len(cls.rgb) == 3
    assert tax.by_name("obstacle_deformable").agreement_threshold == 0.75
    assert tax.by_name("gripper").agreement_threshold == 0.70
    assert len(set(tax.palette())) == 9  # every class has its own colour


def _document() -> dict:
    return yaml.safe_load(Path(load_taxonomy().source).read_text())


def _write(tmp_path: Path, document: dict) -> Path:
    path = tmp_path / "taxonomy.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_threshold_override_per_class(tmp_path):
    doc = _document()
    doc["classes"][5]["agreement_threshold"] = 0.8
    assert load_taxonomy(_write(tmp_path, doc)).by_name("obstacle_deformable").agreement_threshold == 0.8


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d["classes"][2].__setitem__("id", 1), "duplicate class id 1"),
        (
            lambda d: d["classes"][2].__setitem__("name", "target_object"),
            "duplicate class name 'target_object'",
        ),
        (lambda d: d["classes"][8].__setitem__("id", 12), "contiguous"),
        (lambda d: d["classes"][0].__setitem__("id", 9), "class id 0 must be the background"),
        (lambda d: d["classes"][3].__setitem__("category", "squishy"), "field 'category' is 'squishy'"),
        (lambda d: d["classes"][3].__setitem__("colour", "blue"), "field 'colour'"),
        (lambda d: d["classes"][4].pop("name"), "missing field 'name'"),
        (lambda d: d["classes"][4].__setitem__("agreement_threshold", 1.5), "agreement_threshold"),
        (lambda d: d["classes"][4].__setitem__("min_width_px", 0), "min_width_px"),
        (lambda d: d["classes"][4].__setitem__("colour_name", "x"), "unknown field"),
        (lambda d: d.pop("version"), "missing top-level field 'version'"),
    ],
)
def test_invalid_taxonomy_names_file_and_field(tmp_path, mutate, expected):
    doc = _document()
    mutate(doc)
    path = _write(tmp_path, doc)
    with pytest.raises(TaxonomyError) as error:
        load_taxonomy(path)
    assert expected in str(error.value)
    assert str(path) in str(error.value)


def test_unknown_category_lists_known_ones():
    doc = _document()
    doc["classes"][1]["category"] = "liquid"
    with pytest.raises(TaxonomyError, match="known categories: background, rigid, deformable, thin, surface"):
        parse_taxonomy(doc)


def test_unreadable_and_non_yaml_files(tmp_path):
    with pytest.raises(TaxonomyError, match="cannot read taxonomy file"):
        load_taxonomy(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("classes: [unclosed")
    with pytest.raises(TaxonomyError, match="not valid YAML"):
        load_taxonomy(bad)


def test_lookup_errors_list_known_names():
    tax = load_taxonomy()
    with pytest.raises(KeyError, match="known classes: background, target_object"):
        tax.by_name("mug")
    with pytest.raises(KeyError, match="valid ids are 0..8"):
        tax.by_id(9)

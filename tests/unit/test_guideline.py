"""The annotation guideline: rules validated against the taxonomy, revisions numbered and kept,
annotations traced to the revision in force, a document with real example crops."""

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
import yaml

from dataset_pipeline import layout
from dataset_pipeline.annotation_guideline import (
    GuidelineError,
    default_rules_path,
    load_rules,
    make_guideline,
    parse_rules,
    read_revisions,
    register_revision,
    revision_in_force,
)
from dataset_pipeline.images import decode_image
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.taxonomy import load_taxonomy
from tests.conftest import copy_store

TAXONOMY = load_taxonomy()
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def rules_document() -> dict:
    return yaml.safe_load(default_rules_path().read_text(encoding="utf-8"))


def test_packaged_rules_cover_every_class():
    rules = load_rules(None, TAXONOMY)
    assert set(rules.classes) == {c.name for c in TAXONOMY.foreground}
    assert {"occlusion", "overlaps", "transparent", "reflective", "ambiguous"} <= set(rules.global_rules)
    assert all(r.definition and r.boundary for r in rules.classes.values())


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["classes"].pop("gripper"), r"class 'gripper': no rules"),
        (
            lambda d: d["classes"].__setitem__("spoon", d["classes"]["gripper"]),
            r"class 'spoon' is not in the taxonomy",
        ),
        (
            lambda d: d["classes"]["gripper"].__setitem__("min_width_px", -1),
            r"'gripper': field 'min_width_px'",
        ),
        (lambda d: d["global"].pop("reflective"), r"lacks the rule\(s\) reflective"),
        (lambda d: d.__setitem__("taxonomy", "kitchen"), r"'kitchen', the taxonomy in force is"),
        (lambda d: d.__setitem__("effective_date", "next tuesday"), r"'effective_date' 'next tuesday'"),
    ],
)
def test_bad_rules_files_are_refused_naming_file_class_and_field(edit, message):
    document = rules_document()
    edit(document)
    with pytest.raises(GuidelineError, match=message) as error:
        parse_rules(document, TAXONOMY, "team/rules.yaml")
    assert str(error.value).startswith("team/rules.yaml")


def test_revisions_are_numbered_kept_and_made_only_on_change(tmp_path):
    store = DatasetStore(str(tmp_path / "store"))
    rules = parse_rules(rules_document(), TAXONOMY, "rules.yaml")
    first = register_revision(store, rules, TAXONOMY, NOW)
    again = register_revision(store, rules, TAXONOMY, NOW.replace(day=2))
    assert first.new and not again.new and again.revision == first.revision
    assert first.revision["effective_from"] == NOW.isoformat()

    document = rules_document()
    document["classes"]["obstacle_deformable"]["boundary"] = "Follow the fabric's outer edge."
    document["effective_date"] = "2026-12-03T08:00:00Z"
    second = register_revision(
        store, parse_rules(document, TAXONOMY, "rules.yaml"), TAXONOMY, NOW.replace(day=2)
    )
    assert second.new and second.revision["revision"] == 2
    assert second.revision["changes"] == ["class obstacle_deformable: boundary"]
    assert second.revision["effective_from"] == "2026-12-03T08:00:00+00:00"

    # a taxonomy change alone is a new revision too
    taxonomy = replace(
        TAXONOMY, classes=(*TAXONOMY.classes[:-1], replace(TAXONOMY.classes[-1], agreement_threshold=0.9))
    )
    third = register_revision(
        store, parse_rules(document, taxonomy, "rules.yaml"), taxonomy, NOW.replace(day=4)
    )
    assert third.revision["revision"] == 3 and third.revision["changes"] == ["taxonomy only"]
    assert [r["revision"] for r in read_revisions(store)] == [1, 2, 3]
    for number in (1, 2, 3):  # every revision's rules stay in the store
        assert store.exists(layout.guideline_file(number, layout.GUIDELINE_RULES_FILE))

    document["effective_date"] = "2026-11-01T00:00:00Z"  # before revision 3's
    document["title"] = "changed"
    with pytest.raises(GuidelineError, match=r"rules.yaml: field 'effective_date' .* is before revision 3"):
        register_revision(store, parse_rules(document, taxonomy, "rules.yaml"), taxonomy, NOW)
    assert len(read_revisions(store)) == 3


def test_revision_in_force_at_each_annotation_time():
    revisions = [
        {"revision": 1, "effective_from": "2026-11-24T00:00:00+00:00"},
        {"revision": 2, "effective_from": "2026-11-25T10:00:00.250000+00:00"},  # as isoformat() writes a time
    ]
    times = pd.Series(
        ["2026-11-23T23:59:59Z", "2026-11-24T00:00:00Z", "2026-11-25T10:00:00Z", "2026-11-25T10:00:01Z", None]
    )
    assert revision_in_force(times, revisions).tolist() == [pd.NA, 1, 1, 2, pd.NA]
    assert revision_in_force(times, []).isna().all()


def test_guideline_document_has_real_example_crops(reviewed_b48, tmp_path):
    source, corpus = reviewed_b48
    store = copy_store(source, DatasetStore(str(tmp_path / "store")))
    rules = load_rules(None, TAXONOMY)
    outcome = make_guideline(store, rules, TAXONOMY, corpus.annotations, corpus.images, NOW)
    examples = outcome.examples
    assert outcome.new and outcome.revision["revision"] == 1
    assert {"correct", "incorrect"} <= set(examples.kind)
    # correct examples are high-agreement gold, incorrect ones the largest disagreements
    assert examples[examples.kind == "correct"].iou.min() >= 0.85
    assert examples[examples.kind == "incorrect"].iou.max() < 0.8
    assert examples.groupby("class_id").size().between(1, 4).all()
    assert corpus.annotations[corpus.annotations.is_gold].image_id.isin(examples.image_id).any()
    for file in examples.file:
        picture = decode_image(store.read_bytes(layout.guideline_file(1, file)), file)
        assert picture.rgb.shape[2] == 3 and max(picture.width, picture.height) == 240
    markdown = store.read_bytes(outcome.files["markdown"]).decode()
    assert "Revision 1" in markdown and NOW.isoformat() in markdown
    assert all(f"({file})" in markdown for file in examples.file)
    assert "Occlusion." in markdown and rules.classes["gripper"].boundary in markdown
    html = store.read_bytes(outcome.files["html"]).decode()
    assert html.count("data:image/png;base64,") == len(examples)

    # made once: the same rules again keep the document as it was
    before = store.read_bytes(outcome.files["markdown"])
    later = make_guideline(store, rules, TAXONOMY, corpus.annotations, corpus.images, NOW.replace(day=5))
    assert not later.new and store.read_bytes(outcome.files["markdown"]) == before


def test_a_revision_made_before_any_gold_gets_its_examples_later(reviewed_b48, tmp_path):
    source, corpus = reviewed_b48
    store = copy_store(source, DatasetStore(str(tmp_path / "store")))
    rules = load_rules(None, TAXONOMY)
    empty = make_guideline(store, rules, TAXONOMY, corpus.annotations.iloc[:0], corpus.images, NOW)
    assert empty.examples.empty
    assert "none yet" in store.read_bytes(empty.files["markdown"]).decode()
    filled = make_guideline(store, rules, TAXONOMY, corpus.annotations, corpus.images, NOW)
    assert not filled.new and len(filled.examples) > 0
    assert np.all([store.exists(layout.guideline_file(1, f)) for f in filled.examples.file])

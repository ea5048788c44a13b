"""The corpus-wide stages batch by batch (issue 23, item 5): each batch's rows are made once and
kept while its inputs are unchanged; the stored tables equal what the whole-corpus computation
gives."""

import hashlib

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from dataset_pipeline import layout
from dataset_pipeline.annotation_corpus import build_corpus, revision_counts, update_corpus
from dataset_pipeline.store import DatasetStore
from tests.conftest import reviewed_demo


@pytest.fixture
def two_batches(reviewed_b48, tmp_path) -> DatasetStore:
    """The reviewed 48-image batch (copied) and a second reviewed batch of 12 images."""
    source, _ = reviewed_b48
    store = DatasetStore(str(tmp_path / "store"))
    for key in source.list("incoming", recursive=True):
        store.put_upload(key, source.read_bytes(key))
    for key in source.list("tables", recursive=True):
        if not key.startswith("tables/corpus/"):
            store.write_bytes(key, source.read_bytes(key))
    reviewed_demo(store, "s12", n_images=12, seed=4)
    return store


def _stored(store: DatasetStore) -> tuple[pd.DataFrame, pd.DataFrame]:
    return store.read_parquet(layout.CORPUS_ANNOTATIONS_KEY), store.read_parquet(layout.CORPUS_IMAGES_KEY)


def test_the_streamed_corpus_equals_the_whole_one_and_a_batch_is_made_once(two_batches):
    store = two_batches
    summary = update_corpus(store)
    whole = build_corpus(store)
    annotations, images = _stored(store)
    assert summary.batches == ["b48", "s12"] and summary.made == ["b48", "s12"]
    assert_frame_equal(annotations, whole.annotations)  # rows, order and dtypes (nullable ones too)
    assert_frame_equal(images, whole.images)
    assert (summary.images, summary.annotations) == (60, len(whole.annotations))
    assert summary.gold_images == whole.annotations[whole.annotations.is_gold].image_id.nunique() > 0
    assert summary.annotators == sorted(set(whole.annotations.annotator_id))
    expected = revision_counts(whole.annotations)
    assert summary.revisions[["annotations", "images"]].sum().tolist() == (
        expected[["annotations", "images"]].sum().tolist()
    )

    # nothing changed: no batch is made again, the tables hold the same rows
    again = update_corpus(store)
    assert again.made == [] and again.annotations == summary.annotations
    assert_frame_equal(_stored(store)[0], annotations)

    # one batch's annotations change: only that batch is made again
    changed = store.read_parquet(layout.annotations_key("s12"))
    store.write_parquet(layout.annotations_key("s12"), changed.iloc[1:])
    third = update_corpus(store)
    assert third.made == ["s12"] and third.annotations == summary.annotations - 1
    assert_frame_equal(_stored(store)[0], build_corpus(store).annotations)


def test_a_changed_part_is_never_taken_for_the_old_one(two_batches):
    """A part is vouched for by the digest of its inputs, written after its tables: a part whose
    digest file is missing (a step killed before it) is made again, not read half-done."""
    store = two_batches
    update_corpus(store)
    store.delete(layout.stage_part_key("corpus", "b48", layout.STAGE_PART_DIGEST))
    store.write_bytes(layout.stage_part_key("corpus", "b48", "annotations.parquet"), b"half a file")
    assert update_corpus(store).made == ["b48"]
    assert_frame_equal(_stored(store)[0], build_corpus(store).annotations)


def test_the_streamed_quality_report_equals_the_whole_one_across_batches(two_batches):
    """Every check but duplicate_images is decided within a batch; an image of one batch copied
    into the other is found as a duplicate across them, and refinement rates are summed from
    the batches' counts, not averaged."""
    from dataset_pipeline.quality_report import run_quality_checks, update_report, worst_images_png
    from dataset_pipeline.taxonomy import load_taxonomy

    store = two_batches
    images = store.read_parquet(layout.captures_key("s12"))
    first = store.read_parquet(layout.captures_key("b48")).sha256.iloc[0]
    store.write_parquet(layout.captures_key("s12"), images.assign(sha256=[first, *images.sha256.iloc[1:]]))
    update_corpus(store)
    taxonomy = load_taxonomy()
    streamed = update_report(store, taxonomy)
    whole = run_quality_checks(*_stored(store), taxonomy)

    def rows(frame: pd.DataFrame) -> list[tuple]:
        return sorted(map(tuple, frame[["check", "image_id", "annotation_id", "detail"]].astype(str).values))

    assert rows(store.read_parquet(layout.QUALITY_ISSUES_KEY)) == rows(whole.issues)
    assert {c: streamed.report.failures(c) for c in whole.checked} == {
        c: whole.failures(c) for c in whole.checked
    }
    assert streamed.report.summary_table().equals(whole.summary_table())
    assert [streamed.report.describe(c) for c in whole.checked] == [whole.describe(c) for c in whole.checked]
    duplicates = streamed.report.failed("duplicate_images")
    assert {i.split("/")[0] for i in duplicates.image_id} == {"b48", "s12"}
    assert streamed.report.checked == whole.checked
    assert_frame_equal(streamed.report.refinement, whole.refinement)
    annotations, images = _stored(store)
    assert streamed.made == ["b48", "s12"] and (streamed.images, streamed.annotations) == (
        60,
        len(annotations),
    )
    assert len(streamed.worst) == 6 and worst_images_png(store, streamed.worst, taxonomy).startswith(
        b"\x89PNG"
    )

    # unchanged: no batch's checks made again; a stricter rule makes every batch again
    assert update_report(store, taxonomy).made == []
    stricter = update_report(store, taxonomy, min_area_px=10_000)
    assert stricter.made == ["b48", "s12"]
    expected = run_quality_checks(annotations, images, taxonomy, min_area_px=10_000)
    assert stricter.report.failures("min_area") == len(expected.failed("min_area")) > 25  # counted, 25 kept


def test_the_streamed_splits_equal_the_whole_corpus_ones_and_a_batch_is_hashed_once(two_batches):
    """dataset_splits decides over every image's features (dHash, class instances), made once
    per batch from its corpus part: the same splits, facts and summary as the whole corpus in
    memory; a rebuild reads no image of an unchanged batch."""
    from dataset_pipeline.dataset_splits import split_corpus, update_splits
    from dataset_pipeline.taxonomy import load_taxonomy

    store = two_batches
    update_corpus(store)
    taxonomy = load_taxonomy()
    streamed = update_splits(store, taxonomy, seed=3)
    annotations, images = _stored(store)
    whole = split_corpus(store, images, annotations, taxonomy, seed=3)
    assert streamed.made == ["b48", "s12"]
    assert streamed.table.equals(whole.table)
    assert streamed.info == whole.info
    assert_frame_equal(streamed.summary, whole.summary)
    assert (
        set(streamed.table.column("split").to_pylist()) == {"train", "val", "test"}
        and len(streamed.table) == 60
    )

    assert images.uri.str.startswith("incoming/").all()  # where the dHash reads each image
    reads = []
    original = store.read_bytes
    store.read_bytes = lambda key: reads.append(key) or original(key)  # type: ignore[method-assign]
    again = update_splits(store, taxonomy, seed=3)
    assert again.made == [] and not [k for k in reads if k.startswith("incoming/")]
    assert again.table.equals(whole.table)


def test_an_unreadable_image_is_named_when_its_split_features_are_made(tmp_path):
    from dataset_pipeline.dataset_splits import split_features
    from dataset_pipeline.taxonomy import load_taxonomy

    store = DatasetStore(str(tmp_path / "store"))
    store.write_bytes("tables/broken/cut.jpg", b"\xff\xd8\xff not a whole jpeg")
    images = pd.DataFrame(
        {
            "image_id": ["b/cut"],
            "uri": ["tables/broken/cut.jpg"],
            "scene_id": ["s"],
            "episode_id": ["e"],
            "sha256": ["0"],
            "lighting": ["day"],
        }
    )
    no_labels = pd.DataFrame({"image_id": pd.Series(dtype=str), "class_id": pd.Series(dtype=int)})
    with pytest.raises(ValueError, match=r"cut\.jpg: image 'b/cut' \(field uri\) cannot be read"):
        split_features(store, images, no_labels, load_taxonomy())


def test_the_streamed_agreement_report_equals_the_whole_one_and_a_batch_is_measured_once(two_batches):
    """agreement_report sums each batch's evidence (IoU sums and counts, work counts): the same
    report as the whole corpus's annotations at once, to rounding; velocity flags use the team
    median over both batches; a threshold change makes no batch again, a changed batch only
    itself."""
    from dataset_pipeline.agreement_report import (
        AgreementSettings,
        compute_agreement,
        disagreements_png,
        update_agreement,
    )
    from dataset_pipeline.taxonomy import load_taxonomy

    store = two_batches
    update_corpus(store)
    taxonomy = load_taxonomy()
    streamed = update_agreement(store, taxonomy)
    annotations, _ = _stored(store)
    whole = compute_agreement(annotations, taxonomy)
    assert streamed.made == ["b48", "s12"]
    gold = set(whole.per_image.image_id)
    assert {i.split("/")[0] for i in gold} == {"b48", "s12"}  # gold images in both batches
    for name in (
        "per_class",
        "per_annotator",
        "per_batch",
        "per_revision",
        "per_batch_gold",
        "per_pair",
        "drift",
    ):
        assert_frame_equal(getattr(streamed.report, name), getattr(whole, name), check_exact=False, atol=1e-4)
    assert_frame_equal(
        streamed.report.per_image.sort_values("image_id", ignore_index=True),
        whole.per_image.sort_values("image_id", ignore_index=True),
    )
    stored = store.read_parquet(layout.AGREEMENT_TABLES["per_class"])
    assert stored.pairs.tolist() == whole.per_class.pairs.tolist() and stored.pairs.sum() > 0
    assert sorted(streamed.report.per_batch_gold.batch) == ["b48", "s12"]
    least = whole.per_image.sort_values("disagreement", ascending=False).head(6)
    assert [i for _, i, _ in streamed.worst] == list(least.image_id)
    assert disagreements_png(store, streamed.worst).startswith(b"\x89PNG")

    # thresholds are applied to the sums: no batch is measured again, the verdict follows them
    strict = AgreementSettings(thresholds={c.name: 0.999 for c in taxonomy.foreground}, min_instances=1)
    again = update_agreement(store, taxonomy, strict)
    assert again.made == [] and not again.report.per_class.passed.any()

    # one batch loses an annotator's masks: only it is measured again, and the report follows
    part = store.read_parquet(layout.annotations_key("s12"))
    doubled = part.groupby("image_id").annotator_id.transform("nunique") >= 2
    someone = sorted(part[doubled].annotator_id.unique())[0]
    store.write_parquet(layout.annotations_key("s12"), part[part.annotator_id != someone])
    update_corpus(store)
    third = update_agreement(store, taxonomy)
    assert third.made == ["s12"]
    assert_frame_equal(
        third.report.per_class,
        compute_agreement(_stored(store)[0], taxonomy).per_class,
        check_exact=False,
        atol=1e-4,
    )


def test_checksums_are_compared_as_64_bit_words_and_a_malformed_one_is_named():
    """duplicate_images and the split features read checksums and dHashes as 16 hex digits in
    NumPy (8 bytes an image); a value that is not hexadecimal is refused with its row."""
    import pyarrow as pa

    from dataset_pipeline.formats.arrow import hex_words

    digests = [hashlib.sha256(bytes([k])).hexdigest() for k in range(3)]
    words = hex_words(pa.array(digests), "captures: field sha256")
    assert [int(d[:16], 16) for d in digests] == words.tolist()
    with pytest.raises(ValueError, match=r"captures: field sha256: row 1 \('zz"):
        hex_words(pa.array([digests[0], "zz" + digests[1][2:]]), "captures: field sha256")
    with pytest.raises(ValueError, match="at least 16 hex digits"):
        hex_words(pa.array(["abc"]), "captures: field sha256")

"""The corpus-wide stages batch by batch (issue 23, item 5): each batch's rows are made once and
kept while its inputs are unchanged; the stored tables equal what the whole-corpus computation
gives."""

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

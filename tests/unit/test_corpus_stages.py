"""The corpus stages as the assets call them, without Dagster: corpus → agreement → splits → baseline →
zero-shot → active learning → release → card, on a reviewed 48-image demo batch."""

import json

import numpy as np
import pytest

from dataset_pipeline import layout
from dataset_pipeline.active_learning_queue import build_queue, pool_images, top_png
from dataset_pipeline.agreement_report import compute_agreement, thresholds_verdict, write_report
from dataset_pipeline.annotation_corpus import write_corpus
from dataset_pipeline.baseline_model import (
    TrainConfig,
    load_metrics,
    miou_verdict,
    save_baseline,
    train_baseline,
)
from dataset_pipeline.dataset_card import card_inputs, write_card
from dataset_pipeline.dataset_release import (
    check_verdicts,
    is_complete,
    list_releases,
    load_release,
    write_exports,
)
from dataset_pipeline.dataset_splits import SPLITS, leakage_verdict, split_corpus, write_splits
from dataset_pipeline.demo import write_demo_upload
from dataset_pipeline.raw_captures import ingest_batch, write_ingest
from dataset_pipeline.sam2_premasks.classical import ClassicalBackend
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.taxonomy import load_taxonomy
from dataset_pipeline.zero_shot_comparison import (
    evaluate_zero_shot,
    load_summary,
    value_verdict,
    write_summary,
)

TAXONOMY = load_taxonomy()
FORMATS = ["coco", "semantic_png", "hdf5"]


@pytest.fixture(scope="module")
def store(reviewed_b48, tmp_path_factory) -> DatasetStore:
    """A store holding the reviewed batch (its corpus written as the stage writes it) and an
    unreviewed pool batch; the shared fixture's store is not written to."""
    source, corpus = reviewed_b48
    store = DatasetStore(str(tmp_path_factory.mktemp("corpus-stages") / "store"))
    for key in source.list("incoming", recursive=True):
        store.put_upload(key, source.read_bytes(key))
    for key in source.list("tables", recursive=True):
        store.write_bytes(key, source.read_bytes(key))
    write_corpus(store, corpus)
    write_demo_upload(store, "pool", n_images=6, seed=5)
    write_ingest(store, ingest_batch(store, "pool"))
    return store


def test_corpus_stages_run_and_gate_without_dagster(store):
    annotations = store.read_parquet(layout.CORPUS_ANNOTATIONS_KEY)
    images = store.read_parquet(layout.CORPUS_IMAGES_KEY)

    report = compute_agreement(annotations, TAXONOMY)
    write_report(store, report)
    verdict = thresholds_verdict(store.read_parquet(layout.AGREEMENT_TABLES["per_class"]))
    failing = list(report.failing_classes()["class"])
    assert verdict.passed == (not failing) and all(f"{name} IoU" in verdict.summary for name in failing)

    outcome = split_corpus(store, images, annotations, TAXONOMY, seed=0)
    write_splits(store, outcome)
    assert set(outcome.table.column("split").to_pylist()) == set(SPLITS) and len(outcome.table) == len(images)
    assert leakage_verdict(json.loads(store.read_bytes(layout.SPLIT_INFO_KEY))).passed

    run = train_baseline(store, TAXONOMY, TrainConfig(image_size=64, epochs=1, batch_size=8))
    digest = save_baseline(store, run)
    metrics = load_metrics(store)
    assert metrics["checkpoint"] == layout.baseline_checkpoint_key(digest) and store.exists(
        metrics["checkpoint"]
    )
    assert (
        0.0 <= metrics["miou"] <= 1.0
        and run.samples["train"] + run.samples["val"] + run.samples["test"] == 48
    )
    assert (
        miou_verdict(metrics, bar=1.01).passed is False
    )  # a bar no baseline reaches names its worst classes
    assert "worst classes" in miou_verdict(metrics, bar=1.01).summary

    summary = evaluate_zero_shot(store, TAXONOMY, ClassicalBackend(), metrics)
    write_summary(store, summary)
    assert load_summary(store)["test_images"] == run.samples["test"]
    assert summary["annotation_value_points"] == pytest.approx(
        (metrics["miou"] - summary["zero_shot_miou"]) * 100, abs=0.01
    )
    assert value_verdict(summary, bar=-1000).passed

    pool = pool_images(store, "unreviewed")
    assert set(pool.batch) == {"pool"}  # the reviewed batch's images are not in the pool
    queue = build_queue(store, TAXONOMY, pool)
    assert queue["rank"].tolist() == list(range(1, 7)) and np.all(np.diff(queue.score) <= 0)
    assert top_png(store, queue).startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="unknown active-learning pool"):
        pool_images(store, "everything")

    content, version = load_release(store, TAXONOMY, FORMATS, {"description": "test"})
    assert write_exports(content, version, FORMATS).reused is False
    verdicts = dict(
        check_verdicts(content, version, {"class_ids_consistent", *(f"{f}_reloads" for f in FORMATS)})
    )
    assert all(v.passed for v in verdicts.values()), {
        k: v.summary for k, v in verdicts.items() if not v.passed
    }
    assert not is_complete(store, version)
    card = write_card(
        store,
        content,
        version,
        card_inputs(store, content, 30.0, "EUR"),
        completed_at="2026-12-01T00:00:00+00:00",
    )
    assert is_complete(store, version) and list_releases(store) == [version]
    assert f"release {version}" in card.text and "EUR" in card.text
    assert card.cost["hourly_rate"] == 30.0 and card.files > len(content.images)
    # the same inputs give the same version
    assert load_release(store, TAXONOMY, FORMATS, {"description": "test"})[1] == version


def _release_in(folder) -> tuple[DatasetStore, str]:
    """The README demo's stages, as the assets call them, on a 48-image batch in ``folder``: the
    version of the release they make."""
    from dataset_pipeline import quality_report
    from dataset_pipeline.dataset_splits import split_corpus
    from tests.conftest import reviewed_demo

    store = DatasetStore(str(folder))
    corpus = reviewed_demo(store, "b48", n_images=48)
    write_corpus(store, corpus)
    quality_report.write_report(
        store, quality_report.run_quality_checks(corpus.annotations, corpus.images, TAXONOMY)
    )
    write_report(store, compute_agreement(corpus.annotations, TAXONOMY))
    write_splits(store, split_corpus(store, corpus.images, corpus.annotations, TAXONOMY))
    run = train_baseline(store, TAXONOMY, TrainConfig(image_size=64, epochs=1, batch_size=8))
    save_baseline(store, run)
    write_summary(store, evaluate_zero_shot(store, TAXONOMY, ClassicalBackend(), load_metrics(store)))
    content, version = load_release(store, TAXONOMY, FORMATS, {"description": "test"})
    write_exports(content, version, FORMATS)
    write_card(store, content, version, card_inputs(store, content, 0.0, "USD"), completed_at="now")
    return store, version


def test_the_same_inputs_in_two_folders_give_the_same_release_version(tmp_path):
    """Machine paths and measured times (the baseline's latency) stay out of the version: the README's
    promise "the same inputs give the same version" holds on any machine, in any folder."""
    first, version = _release_in(tmp_path / "one")
    second, again = _release_in(tmp_path / "elsewhere" / "two")
    latencies = {load_metrics(s)["latency_ms_per_image"] for s in (first, second)}
    assert again == version, f"versions differ (latencies {latencies})"
    provenance = second.read_parquet(
        f"{layout.release_prefix(again)}/{layout.provenance_file('annotations', 'parquet')}"
    )
    assert provenance.source_file.str.startswith("reviews/b48/").all()  # store keys, not this machine's path
    assert not any(str(tmp_path) in text for text in provenance.source_file)

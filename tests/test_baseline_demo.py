"""The baseline trained on the README's demo corpus reaches the mIoU measured for it (slow, but run)."""

import pytest

from dataset_pipeline.agreement_report import AgreementSettings, compute_agreement
from dataset_pipeline.annotation_corpus import build_corpus
from dataset_pipeline.baseline_model import (
    TrainConfig,
    build_model,
    evaluate,
    load_samples,
    reference_annotations,
    train,
)
from dataset_pipeline.captures import captures_key, ingest_batch
from dataset_pipeline.dataset_splits import assign_splits
from dataset_pipeline.demo import write_demo_upload
from dataset_pipeline.reviewed_annotations import annotations_key, import_batch_reviews
from dataset_pipeline.sam2_premasks import premask_batch, premasks_key
from dataset_pipeline.sam2_premasks.classical import ClassicalBackend
from dataset_pipeline.simulated_review import simulate_review
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.taxonomy import load_taxonomy

#: Test mIoU of the default baseline (DeepLabV3+ / MobileNetV2, random init, 128 px, 20 epochs,
#: Dice + cross-entropy) on the default 120-image demo split as below, measured on the 2-core dev
#: box: 0.377, the same in two runs (2026-11-27; seeded initialisation). The floor (80% of it)
#: leaves room for other thread counts and BLAS builds.
MIOU_FLOOR = 0.30


@pytest.mark.slow
def test_default_baseline_reaches_the_measured_floor(tmp_path):
    taxonomy = load_taxonomy()
    store = DatasetStore(str(tmp_path / "store"))
    batch = "demo-s0-n120"
    write_demo_upload(store, batch, n_images=120, seed=0)
    store.write_parquet(captures_key(batch), ingest_batch(store, batch).captures)
    store.write_parquet(
        premasks_key(batch), premask_batch(store, batch, ClassicalBackend(), taxonomy=taxonomy).table
    )
    simulate_review(store, batch, seed=0)
    store.write_parquet(annotations_key(batch), import_batch_reviews(store, batch, taxonomy).annotations)
    corpus = build_corpus(store)
    agreement = compute_agreement(corpus.annotations, taxonomy, AgreementSettings(boundary=False))
    quality = dict(
        zip(agreement.per_annotator.annotator_id, agreement.per_annotator.iou_vs_consensus, strict=True)
    )
    presence = corpus.annotations.assign(v=1).pivot_table(
        index="image_id", columns="class_id", values="v", aggfunc="max", fill_value=0
    )
    plan = assign_splits(corpus.images, presence, seed=0)
    labels = reference_annotations(corpus.annotations, quality)
    config = TrainConfig()
    samples = {
        s: load_samples(
            store,
            corpus.images[
                corpus.images.image_id.isin(plan.assignments[plan.assignments.split == s].image_id)
            ],
            labels,
            config.image_size,
        )
        for s in ("train", "val", "test")
    }
    model = build_model(config, len(taxonomy.classes))
    result = train(model, samples["train"], samples["val"], config, len(taxonomy.classes))
    evaluation = evaluate(model, samples["test"], len(taxonomy.classes), result.device)
    print(f"baseline test mIoU {evaluation.miou:.4f} after {result.seconds:.0f} s")
    assert evaluation.miou >= MIOU_FLOOR
    assert result.history[-1]["loss"] < result.history[0]["loss"]

"""The baseline trained as the README's demo trains it reaches the mIoU measured there (slow, but run)."""

import pytest
from dagster import instance_for_test, materialize

from dataset_pipeline.baseline_model import load_metrics
from dataset_pipeline.definitions.environment import build_resources
from dataset_pipeline.store import DatasetStore
from tests.conftest import reviewed_demo, stage_assets

#: Test mIoU of the default baseline (DeepLabV3+ / MobileNetV2, random init, 128 px, 20 epochs,
#: Dice + cross-entropy) on the README demo's 120 reviewed images, measured by
#: `dataset-pipeline demo` on the 2-core dev box: 0.3575 (2026-12-01; 0.377 on 2026-11-27 with the
#: splits drawn without the near-duplicate hashes). The floor leaves room for other thread counts
#: and BLAS builds.
MIOU_FLOOR = 0.30


@pytest.mark.slow
def test_default_baseline_reaches_the_measured_floor(tmp_path):
    store = DatasetStore(str(tmp_path / "store"))
    reviewed_demo(store, "demo-s0-n120", n_images=120, seed=0)
    stages = ("annotation_corpus", "agreement_report", "dataset_splits", "baseline_model")
    with instance_for_test() as instance:
        result = materialize(stage_assets(stages), instance=instance, resources=build_resources(store.root))
    assert result.success
    metrics = load_metrics(store)
    print(f"baseline test mIoU {metrics['miou']:.4f} after {metrics['train_seconds']:.0f} s")
    assert metrics["miou"] >= MIOU_FLOOR
    assert metrics["history"][-1]["loss"] < metrics["history"][0]["loss"]

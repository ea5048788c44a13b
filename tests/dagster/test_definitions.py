"""The code location: loads fast (no heavy imports), validates, holds every stage and routes GPU work."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = [
    "torch",
    "torchvision",
    "sam2",
    "segmentation_models_pytorch",
    "great_expectations",
    "timm",
    "s3fs",
    "dagster_aws",
    "cv2",
]


def test_loading_the_code_location_imports_no_heavy_library():
    code = (
        "import json, sys; import dataset_pipeline.definitions as d; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_dagster_definitions_validate_passes():
    dagster = Path(sys.executable).with_name("dagster")
    out = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "DAGSTER_HOME": ""},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Validation successful" in out.stdout + out.stderr


def test_definitions_hold_the_stage_its_checks_job_and_sensor():
    from dataset_pipeline.definitions import defs

    graph = defs.resolve_asset_graph()
    assert "raw_captures" in {k.to_user_string() for k in graph.get_all_asset_keys()}
    checks = {k.name for k in graph.asset_check_keys}
    assert {"captures_table_expectations", "quarantine_share_under_limit"} <= checks
    assert defs.resolve_sensor_def("capture_upload_sensor").job_name == "capture_batch_job"


GPU_ASSETS = {
    "sam2_premasks",
    "episode_propagation",
    "baseline_model",
    "zero_shot_comparison",
    "active_learning_queue",
}


def test_every_gpu_asset_requests_a_gpu_and_no_cpu_asset_does():
    """The op tags that Kubernetes (dagster-k8s), Celery and the run queue read, checked on the code location."""
    from assets import ALL_ASSETS
    from assets.execution import step_tags
    from dataset_pipeline.definitions import defs

    tags = {asset.key.to_user_string(): step_tags(asset) for asset in ALL_ASSETS}
    assert len(tags) == len(defs.resolve_asset_graph().get_all_asset_keys())  # every asset of the location
    gpu = {name for name, t in tags.items() if t.get("dataset_pipeline/device") == "gpu"}
    assert gpu == GPU_ASSETS
    for name, t in tags.items():
        k8s = json.loads(t["dagster-k8s/config"]) if "dagster-k8s/config" in t else {}  # tags hold JSON
        limits = k8s.get("container_config", {}).get("resources", {}).get("limits", {}) if k8s else {}
        ecs = json.loads(t["ecs/container_overrides"]) if "ecs/container_overrides" in t else {}
        if name in GPU_ASSETS:
            assert limits.get("nvidia.com/gpu") == "1" and t["dagster-celery/queue"] == "gpu", name
            assert {"type": "GPU", "value": "1"} in ecs["resourceRequirements"], name
        else:
            assert "nvidia.com/gpu" not in str(t) and "GPU" not in str(t), name
            assert t.get("dagster-celery/queue") == "cpu", name
    for job in (
        "capture_batch_job",
        "review_job",
        "propagation_job",
        "corpus_job",
    ):  # tags per run, not per job
        assert "dataset_pipeline/uses-gpu" not in defs.resolve_job_def(job).tags


def test_only_a_run_that_holds_a_gpu_step_is_a_gpu_run():
    from dataset_pipeline.definitions.jobs import (
        CORPUS_STAGES,
        PER_BATCH_STAGES,
        PROPAGATION_STAGES,
        REVIEW_STAGES,
        run_tags,
    )

    gpu_run = {"dataset_pipeline/uses-gpu": "true"}
    assert run_tags(PER_BATCH_STAGES) == run_tags(CORPUS_STAGES) == run_tags(PROPAGATION_STAGES) == gpu_run
    assert run_tags(REVIEW_STAGES) == {}  # an import never waits for a GPU
    for stage in (*PER_BATCH_STAGES, *REVIEW_STAGES, *PROPAGATION_STAGES, *CORPUS_STAGES):
        assert bool(run_tags([stage])) is (stage in GPU_ASSETS), stage


def test_descriptions_keep_their_angle_brackets_in_markdown():
    """The UI renders descriptions as Markdown, which swallows a bare `<version>` or `<batch>` as an
    HTML tag: a path with a placeholder is written as code."""
    import re

    from dataset_pipeline.definitions import defs

    graph = defs.resolve_asset_graph()
    texts = [graph.get(key).description or "" for key in graph.get_all_asset_keys()]
    texts += [graph.get_check_spec(key).description or "" for key in graph.asset_check_keys]
    texts += [s.description or "" for s in defs.sensors or []] + [
        s.description or "" for s in defs.schedules or []
    ]
    bare = [t for t in texts if re.search(r"<[A-Za-z_]+>", re.sub(r"`[^`]*`", "", t))]
    assert bare == []
    assert any("`releases/<version>/`" in t for t in texts)


def test_celery_workers_take_a_step_only_when_free(monkeypatch):
    """The app a worker runs (``celery -A dagster_celery.app``) is built with this project's
    settings (dagster_celery_config): one message at a time, acknowledged when the step ends, so
    steps go to free workers in the order sent; and the executor's broker."""
    from dagster_celery.make_app import make_app

    monkeypatch.setenv("DATASET_PIPELINE_CELERY_BROKER", "redis://127.0.0.1:6379/3")
    monkeypatch.delitem(sys.modules, "dagster_celery_config", raising=False)
    app = make_app()
    assert app.conf.worker_prefetch_multiplier == 1 and app.conf.task_acks_late is True
    assert app.conf.broker_url == "redis://127.0.0.1:6379/3"
    assert app.conf.broker_transport_options["visibility_timeout"] >= 3600

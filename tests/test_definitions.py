"""The code location: loads fast (no heavy imports), validates, and keeps Dagster out of the domain."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
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


def test_domain_layer_does_not_import_dagster():
    offenders = []
    for path in (ROOT / "dataset_pipeline").rglob("*.py"):
        if path.name in ("definitions.py", "automation.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "dagster" or n.startswith("dagster.") or n.startswith("dagster_") for n in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []

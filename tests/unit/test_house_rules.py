"""The rules that keep the house simple, read from the code (docs/DESIGN.md, "Layout").

* every asset ``K`` is defined, with its checks, in ``assets/K.py``; its logic is
  ``dataset_pipeline/K.py`` or ``dataset_pipeline/K/``;
* only ``dataset_pipeline/definitions/`` (and the CLI, which calls it) knows Dagster: no other
  domain module imports dagster, ``assets`` or ``resources``;
* no import cycle among the project's modules, package ``__init__`` files included;
* store keys are spelled in ``layout.py`` only, table schemas in ``schemas.py`` only;
* importing any module changes no process state (environment, warnings filters).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dataset_pipeline import schemas
from tests.conftest import ROOT

PACKAGES = ("dataset_pipeline", "assets", "resources", "robot_workers")
WIRING = "dataset_pipeline.definitions"
#: The store's top-level folders (layout.py); a string that starts with one and a "/" is a key.
STORE_PATH = re.compile(r"^(incoming|reviews|tables|previews|models|releases|tasks|ground_truth|frames)/\S*$")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


def _imports(name: str) -> set[str]:
    """Every module the module imports, anywhere in it (function bodies and TYPE_CHECKING too),
    as the project module it resolves to (or the top-level name of a library)."""
    path, found = MODULES[name], set()
    for node in ast.walk(TREES[name]):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            resolved = target
            while resolved and resolved not in MODULES:
                resolved = resolved.rpartition(".")[0]
            found.add(resolved or target.split(".")[0])
    found.discard(name)
    return found


GRAPH = {name: {t for t in _imports(name) if t in MODULES} for name in MODULES}


def _asset_functions() -> dict[str, str]:
    """Asset name -> the module defining it (functions decorated with @asset, @multi_asset, @graph_asset)."""
    found = {}
    for name, tree in TREES.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                for decorator in node.decorator_list:
                    call = decorator.func if isinstance(decorator, ast.Call) else decorator
                    if getattr(call, "id", getattr(call, "attr", "")) in (
                        "asset",
                        "multi_asset",
                        "graph_asset",
                    ):
                        found[node.name] = name
    return found


def test_every_asset_and_its_checks_live_in_their_stage_module_with_a_domain_of_the_same_name():
    assets = _asset_functions()
    assert len(assets) == 16
    for asset, module in assets.items():
        assert module == f"assets.{asset}", f"asset {asset} is defined in {module}"
        domain = ROOT / "dataset_pipeline"
        assert (domain / f"{asset}.py").is_file() or (domain / asset).is_dir(), f"no dataset_pipeline/{asset}"
        # every check declared in the module checks that module's asset
        for node in ast.walk(TREES[module]):
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    if keyword.arg == "asset" and isinstance(keyword.value, ast.Name):
                        assert keyword.value.id == asset, f"{module}: a check of {keyword.value.id}"


def test_only_the_wiring_knows_dagster_and_the_domain_imports_neither_assets_nor_resources():
    offenders = []
    for name in MODULES:
        if not name.startswith("dataset_pipeline") or name == WIRING or name.startswith(WIRING + "."):
            continue
        for target in _imports(name):
            if name == "dataset_pipeline.cli" and target.startswith(WIRING):
                continue  # the CLI starts runs through the wiring, inside the command that needs it
            if target.split(".")[0] in ("dagster", "assets", "resources") or target.startswith(
                ("dagster_", WIRING)
            ):
                offenders.append(f"{name} imports {target}")
    assert offenders == []


def test_the_workers_of_the_other_environments_import_nothing_of_the_project():
    """robot_workers/ runs in lerobot's and tensorflow's venvs, which have none of the project's
    dependencies: the standard library, NumPy, their library and dagster-pipes only."""
    allowed = {
        "numpy",
        "lerobot",
        "datasets",
        "pyarrow",
        "tensorflow",
        "tensorflow_datasets",
        "dagster_pipes",
    }
    offenders = []
    for name in MODULES:
        if name.split(".")[0] != "robot_workers":
            continue
        for target in _imports(name):
            top = target.split(".")[0]
            if top == "robot_workers" or top in allowed or top in sys.stdlib_module_names:
                continue
            offenders.append(f"{name} imports {target}")
    assert offenders == []


def test_no_import_cycle_among_the_projects_modules():
    cycles, index, low, stack, on_stack = [], {}, {}, [], set()

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in GRAPH:
        if node not in index:
            visit(node)
    assert cycles == []


def _docstring_nodes(tree: ast.AST) -> set[int]:
    nodes = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                nodes.add(id(first.value))
    return nodes


def test_store_keys_are_spelled_in_the_layout_module_only():
    offenders = []
    for name, tree in TREES.items():
        if name == "dataset_pipeline.layout":
            continue
        docstrings = _docstring_nodes(tree)
        for node in ast.walk(tree):
            text = None
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                text = node.value
            elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
                text = str(node.values[0].value)
            if text is not None and STORE_PATH.match(text):
                offenders.append(f"{name}:{node.lineno} {text!r}")
    assert offenders == []


def test_table_schemas_are_typed_in_the_schemas_module_only():
    """No other module writes out a table's whole column list (a row dict naming its values is fine)."""
    tables = [t for t in vars(schemas).values() if isinstance(t, schemas.TableSchema) and len(t.columns) >= 3]
    offenders = []
    for name, tree in TREES.items():
        if name == "dataset_pipeline.schemas":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.List | ast.Tuple) and node.elts:
                if all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
                    names = {e.value for e in node.elts}  # type: ignore[attr-defined]
                    offenders += [f"{name}:{node.lineno} {t.name}" for t in tables if names == set(t.columns)]
    assert offenders == []


def test_the_house_rules_see_what_they_check():
    """The rules above are read from real code: planted violations are caught."""
    assert "dataset_pipeline.layout" in GRAPH["dataset_pipeline.store"]
    assert STORE_PATH.match("tables/captures/b1.parquet") and not STORE_PATH.match("tables")
    assert not STORE_PATH.match("releases/<version>/: COCO (RLE, iscrowd 0)")  # prose, not a key
    tree = ast.parse("x = ['image_id', 'task_id', 'project_id']")
    lists = [n for n in ast.walk(tree) if isinstance(n, ast.List)]
    assert {e.value for e in lists[0].elts} == set(schemas.LABEL_STUDIO_TASKS.columns)


@pytest.mark.parametrize("entry", ["dataset_pipeline.definitions", "dataset_pipeline.cli"])
def test_importing_changes_no_process_state(entry):
    """In a fresh process, with the libraries the modules import loaded first: importing every module
    of the project (the code location, the CLI) sets no environment variable and no warnings filter."""
    script = f"""
import importlib, os, pkgutil, warnings
import dagster, defusedxml.ElementTree, numpy, pandas, pydantic, yaml
environment, filters = dict(os.environ), list(warnings.filters)
importlib.import_module({entry!r})
for package in {PACKAGES!r}:
    for info in pkgutil.walk_packages(importlib.import_module(package).__path__, package + "."):
        importlib.import_module(info.name)
print(sorted(k for k, v in os.environ.items() if environment.get(k) != v), warnings.filters == filters)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.split("\n")[-2] == "[] True"

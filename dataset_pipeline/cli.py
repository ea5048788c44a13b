"""The ``dataset-pipeline`` console command.

Loads fast: Dagster and every heavy library are imported inside the sub-command that
needs them. ``demo`` runs the main job through Dagster (dataset_pipeline.automation),
so its runs are recorded in DAGSTER_HOME and shown by ``dagster dev``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

DEFAULT_DAGSTER_HOME = ".dagster_home"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dataset-pipeline", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="render a demo upload and run the pipeline on it through Dagster")
    _demo_options(demo)
    demo.add_argument(
        "--dagster-home",
        default=None,
        help=f"Dagster instance folder (default: $DAGSTER_HOME, else ./{DEFAULT_DAGSTER_HOME})",
    )
    data = sub.add_parser("demo-data", help="only write a demo upload (and its ground truth) into the store")
    _demo_options(data)

    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            return _run_demo(args)
        return _write_demo_data(args)
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _demo_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=int, default=120, help="number of images (default 120)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--out", default=None, help="dataset store: folder or s3://bucket/prefix (default ./data)"
    )
    parser.add_argument("--batch", default=None, help="batch name (default demo-s<seed>-n<images>)")


def _store_and_batch(args: argparse.Namespace):
    from dataset_pipeline.captures import check_batch_name
    from dataset_pipeline.store import DatasetStore

    url = args.out or os.environ.get("DATASET_PIPELINE_STORE", "data")
    batch = check_batch_name(args.batch or f"demo-s{args.seed}-n{args.images}")
    return DatasetStore(url), batch


def _ensure_demo_upload(store, batch: str, images: int, seed: int) -> None:
    from dataset_pipeline.captures import MANIFEST_FILE, upload_prefix
    from dataset_pipeline.demo import write_demo_upload
    from dataset_pipeline.store import join_key

    if store.exists(join_key(upload_prefix(batch), MANIFEST_FILE)):
        print(
            f"upload {store.url(upload_prefix(batch))} exists already: reusing it (raw uploads are never rewritten)"
        )
        return
    started = time.perf_counter()
    upload = write_demo_upload(store, batch, images, seed)
    print(
        f"rendered {upload.n_images} demo images ({upload.n_instances} ground-truth instances) "
        f"into {store.url(upload_prefix(batch))} in {time.perf_counter() - started:.1f} s"
    )


def _write_demo_data(args: argparse.Namespace) -> int:
    store, batch = _store_and_batch(args)
    _ensure_demo_upload(store, batch, args.images, args.seed)
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    home = Path(args.dagster_home or os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME).resolve()
    _prepare_dagster_home(home)
    store, batch = _store_and_batch(args)
    # Step processes and `dagster dev` read the store root from the environment.
    os.environ["DATASET_PIPELINE_STORE"] = store.root_url
    print(f"dataset store: {store.root_url}\ndagster home:  {home}")
    _ensure_demo_upload(store, batch, args.images, args.seed)

    from dataset_pipeline.automation import PER_BATCH_ASSETS, iter_batch_stages

    started = time.perf_counter()
    total, ok, paths = len(PER_BATCH_ASSETS), True, {}
    for index, outcome in enumerate(iter_batch_stages(batch), start=1):
        status = "ok" if outcome.passed else "FAILED"
        print(f"[{index}/{total}] {outcome.asset}: {status} (run {outcome.run_id[:8]})", flush=True)
        if outcome.figures:
            print("      " + ", ".join(f"{k}={v}" for k, v in outcome.figures.items() if len(str(v)) < 80))
        for name, passed, description in outcome.checks:
            first_line = description.splitlines()[0] if description else ""
            print(f"      check {name}: {'passed' if passed else 'FAILED'} - {first_line}")
        if outcome.error:
            print(f"      error: {outcome.error}")
        paths |= {f"{outcome.asset}: {k}": v for k, v in outcome.paths.items()}
        ok = ok and outcome.passed
    print(
        f"\n{'done' if ok else 'stopped'} in {time.perf_counter() - started:.1f} s. Results in {store.root_url}:"
    )
    width = max((len(k) for k in paths), default=0)
    for label, path in paths.items():
        print(f"  {label:<{width}}  {path}")
    print(
        f"See every materialization in the UI:  DAGSTER_HOME={home} DATASET_PIPELINE_STORE={store.root_url} "
        f".venv/bin/dagster dev"
    )
    return 0 if ok else 1


def _prepare_dagster_home(home: Path) -> None:
    """Point DAGSTER_HOME at ``home`` and give it the project's dagster.yaml if it has none."""
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    target = home / "dagster.yaml"
    template = Path(__file__).resolve().parent.parent / "dagster.yaml"
    if not target.exists() and template.exists():
        shutil.copyfile(template, target)


if __name__ == "__main__":
    sys.exit(main())

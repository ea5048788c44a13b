"""The ``dataset-pipeline`` console command.

Loads fast: Dagster and every heavy library are imported inside the sub-command that
needs them. ``demo`` runs the main job through Dagster (``dataset_pipeline.definitions.launcher``),
so its runs are recorded in DAGSTER_HOME and shown by ``dagster dev``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from dataset_pipeline.formats import IMPORT_FORMATS
from dataset_pipeline.schemas import REVIEW_STATUSES

DEFAULT_DAGSTER_HOME = ".dagster_home"
#: The demo trains the baseline for fewer epochs than the pipeline (20), to stay under 4 minutes on
#: 2 cores: on its 112 training images the best validation epoch is the second (val mIoU 0.20), so 3
#: epochs keep the same model as 20 (test mIoU 0.186 both). A smoke test of trainability either way.
DEMO_EPOCHS = 3


def main(argv: list[str] | None = None) -> int:
    # This process's pyarrow allocates from the C allocator, Parquet reader included: the variable
    # must be set before pyarrow loads, so here, first (store.use_system_arrow_pool has the why).
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    parser = argparse.ArgumentParser(prog="dataset-pipeline", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="render a demo upload and run the pipeline on it through Dagster")
    _demo_options(demo)
    demo.add_argument(
        "--epochs",
        type=int,
        default=None,
        help=f"baseline training epochs (default {DEMO_EPOCHS}, or $DATASET_PIPELINE_BASELINE_EPOCHS; the pipeline's is 20)",
    )
    demo.add_argument(
        "--dagster-home",
        default=None,
        help=f"Dagster instance folder (default: $DAGSTER_HOME, else ./{DEFAULT_DAGSTER_HOME})",
    )
    data = sub.add_parser("demo-data", help="only write a demo upload (and its ground truth) into the store")
    _demo_options(data)

    review = sub.add_parser(
        "import-review",
        help="import one annotation export (CVAT XML/COCO, Label Studio JSON, COCO) to Parquet",
    )
    review.add_argument("path", help="the export file")
    review.add_argument("--format", default="auto", choices=["auto", *IMPORT_FORMATS])
    review.add_argument("--taxonomy", default=None, help="taxonomy YAML (default: the packaged one)")
    review.add_argument(
        "--label-map",
        action="extend",  # repeated flags and several pairs after one flag accumulate
        nargs="+",
        default=[],
        metavar="NAME=CLASS",
        help="map a tool's label to a taxonomy class (repeatable: --label-map a=x b=y --label-map c=z)",
    )
    review.add_argument(
        "--images",
        default=None,
        help="the batch's manifest.csv or image folder, to check image ids and sizes",
    )
    review.add_argument("--annotator", default="unknown", help="annotator of exports that name none")
    review.add_argument("--review-status", default="unreviewed", choices=list(REVIEW_STATUSES))
    review.add_argument("--out", required=True, help="the annotations table to write (.parquet)")

    ingest = sub.add_parser(
        "ingest",
        help="turn a robot dataset (LeRobot, RLDS, episode HDF5) into an upload batch of sampled frames",
    )
    ingest.add_argument("source", help="the dataset's folder")
    ingest.add_argument("--out", required=True, help="dataset store: folder or s3://bucket/prefix")
    ingest.add_argument("--batch", default=None, help="batch name (default: the source folder's name)")
    sampling = ingest.add_mutually_exclusive_group()
    sampling.add_argument("--every", type=int, default=None, help="keep every N-th frame")
    sampling.add_argument("--fps", type=float, default=None, help="keep frames at about this rate")
    ingest.add_argument(
        "--camera", action="extend", nargs="+", default=[], metavar="KEY", help="cameras (default: all)"
    )
    ingest.add_argument("--lighting", default="unknown", help="the captures' lighting (default unknown)")

    back = sub.add_parser(
        "write-back",
        help="write an augmented copy of a robot dataset with per-frame class maps from an annotations table",
    )
    back.add_argument("source", help="the dataset's folder (as ingested)")
    back.add_argument(
        "--annotations", required=True, help="annotations table (.parquet, as import-review writes)"
    )
    back.add_argument("--out", required=True, help="folder for the augmented copy (must not exist)")
    back.add_argument("--taxonomy", default=None, help="taxonomy YAML (default: the packaged one)")

    propagate = sub.add_parser(
        "propagate",
        help="carry keyframe label maps (PNG) to every frame of one episode (DIS optical flow or sam2's video predictor)",
    )
    propagate.add_argument("frames_dir", help="one episode's frames (order = sorted file names)")
    propagate.add_argument(
        "keyframe_masks_dir", help="PNG label maps of some frames (same stem as the frame)"
    )
    propagate.add_argument(
        "--out", required=True, help="folder for one PNG per frame, in the masks' encoding"
    )
    propagate.add_argument("--backend", default="auto", choices=["auto", "flow", "sam2"])
    propagate.add_argument(
        "--checkpoint", default=None, help="SAM 2 checkpoint (.pt); auto uses sam2 with one"
    )
    propagate.add_argument(
        "--config", default=None, help="sam2 config (default configs/sam2.1/sam2.1_hiera_t.yaml)"
    )
    propagate.add_argument("--device", default="auto", help="sam2 device: auto, cuda, cpu")

    backend = sub.add_parser(
        "ml-backend",
        help="serve the pre-mask model to Label Studio (its ML backend protocol): clicks and boxes → masks",
    )
    _ml_backend_options(backend)

    args = parser.parse_args(argv)
    from dataset_pipeline.episode_propagation import PropagationError
    from dataset_pipeline.formats.importing import AnnotationImportError
    from dataset_pipeline.formats.robot_dataset import RobotDatasetError

    try:
        if args.command == "demo":
            return _run_demo(args)
        if args.command == "import-review":
            return _import_review(args)
        if args.command == "ingest":
            return _ingest(args)
        if args.command == "write-back":
            return _write_back(args)
        if args.command == "propagate":
            return _propagate(args)
        if args.command == "ml-backend":
            return _ml_backend(args)
        return _write_demo_data(args)
    except (AnnotationImportError, RobotDatasetError, PropagationError) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    except Interrupted as exc:
        print(
            f"\ninterrupted during {exc.stage}; nothing half-written is kept. Run the same command again to "
            "continue: it reuses the upload and the reviews, and a release already written.",
            file=sys.stderr,
        )
        return 130
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
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
    from dataset_pipeline.layout import check_batch_name
    from dataset_pipeline.store import StoreConfig

    batch = check_batch_name(args.batch or f"demo-s{args.seed}-n{args.images}")
    return StoreConfig.from_environment(args.out).open(), batch


def _ensure_demo_upload(store, batch: str, images: int, seed: int) -> None:
    from dataset_pipeline.demo import write_demo_upload
    from dataset_pipeline.layout import manifest_key, upload_prefix

    if store.exists(manifest_key(batch)):
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


def _ensure_demo_robot_upload(store, batch: str, seed: int) -> None:
    from dataset_pipeline.demo import write_demo_robot_upload
    from dataset_pipeline.layout import upload_complete_key, upload_prefix

    if store.exists(upload_complete_key(batch)):
        print(f"robot dataset {store.url(upload_prefix(batch))} exists already: reusing it")
        return
    started = time.perf_counter()
    upload = write_demo_robot_upload(store, batch, seed=seed)
    print(
        f"the demo robot logged {upload.episodes} episodes ({upload.frames} frames) as a LeRobot v3.0 dataset with "
        f"lerobot's recorder into {store.url(upload_prefix(batch))} in {time.perf_counter() - started:.1f} s",
        flush=True,
    )


def _write_demo_data(args: argparse.Namespace) -> int:
    store, batch = _store_and_batch(args)
    _ensure_demo_upload(store, batch, args.images, args.seed)
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    home = Path(args.dagster_home or os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME).resolve()
    _prepare_dagster_home(home)
    store, batch = _store_and_batch(args)
    # Step processes and `dagster dev` read the store root (and the epochs) from the environment.
    os.environ["DATASET_PIPELINE_STORE"] = store.root_url
    if args.epochs is not None or "DATASET_PIPELINE_BASELINE_EPOCHS" not in os.environ:
        os.environ["DATASET_PIPELINE_BASELINE_EPOCHS"] = str(args.epochs or DEMO_EPOCHS)
    # The demo team's rules file, revised during the run (annotation_guideline keeps each revision).
    rules_path = Path(os.environ.setdefault("DATASET_PIPELINE_GUIDELINE", str(home / "demo-guideline.yaml")))
    revision_state = home / "demo-guideline-revised-at.json"
    # The demo team: annotation_tasks plans each batch's work for them (gold to a rotating pair).
    from dataset_pipeline.demo.review import ANNOTATORS

    roster = os.environ.setdefault(
        "DATASET_PIPELINE_ANNOTATORS", ",".join(a.annotator_id for a in ANNOTATORS)
    )
    print(f"dataset store: {store.root_url}\ndagster home:  {home}")
    _ensure_demo_upload(store, batch, args.images, args.seed)

    from dataset_pipeline.definitions.launcher import (
        batch_stages,
        corpus_stages,
        iter_stages,
        propagation_stages,
        review_stages,
    )

    pool_batch, robot_batch = f"{batch}-pool", f"{batch}-robot"
    corpus = corpus_stages()
    plan = [
        batch_stages(batch),
        review_stages(batch) + propagation_stages(batch),
        review_stages(batch),
        batch_stages(robot_batch),
        review_stages(robot_batch) + propagation_stages(robot_batch),
        review_stages(robot_batch),
        batch_stages(pool_batch),
        [stage for stage in corpus if stage[1] == "annotation_guideline"],
        corpus,
    ]
    total = sum(len(p) for p in plan)
    started = time.perf_counter()
    paths: dict[str, str] = {}

    def run(part: int) -> bool:
        return _run_plan(
            iter_stages, plan[part], paths, first=sum(len(p) for p in plan[:part]) + 1, total=total
        )

    ok = run(0)
    if ok:  # people review the tasks: here, the simulated annotators
        review = _ensure_demo_review(store, batch, args.seed, revise=True)
        if review is not None and review.revised_at is not None:
            revision_state.write_text(json.dumps({"revised_at": review.revised_at.isoformat()}))
        ok = run(1)
    if ok:  # the peer reviewers and the auditor return their verdicts on the QC samples
        _ensure_demo_verdicts(store, batch, args.seed)
        ok = run(2)
    if ok:  # the robot logged a LeRobot dataset: sampled, pre-masked, reviewed; its masks go back into it
        _ensure_demo_robot_upload(store, robot_batch, args.seed)
        ok = run(3)
    if ok:
        # The keyframes of its long episodes, gold ones by the next pair of the rotation. Then
        # their masks are propagated to the frames between.
        _ensure_demo_review(store, robot_batch, args.seed)
        ok = run(4)
    if ok:  # people accept or correct the propagated frames; the corrections are imported
        _ensure_demo_corrections(store, robot_batch, args.seed)
        ok = run(5)
    if ok:  # next week's upload, not reviewed yet: the active-learning pool
        _ensure_demo_upload(store, pool_batch, max(6, args.images // 5), args.seed + 1)
        ok = run(6)
    from dataset_pipeline.annotation_guideline import read_revisions

    made = read_revisions(store)
    if ok:  # the guideline the team started with (revision 1) ...
        if made:  # a demo run again on its store: the rules are those of the last revision
            _demo_rules(rules_path, 2, made[-1]["effective_from"])
        else:
            _demo_rules(rules_path, 1, DEMO_FIRST_RULES_AT)
        ok = run(7)
    if (
        ok
    ):  # ... and its revision (cloth, gripper, ambiguous classes), adopted half-way through the first batch
        if not made:
            _demo_rules(rules_path, 2, _revised_at(revision_state, store, batch))
        ok = run(8)
    print(
        f"\n{'done' if ok else 'stopped'} in {time.perf_counter() - started:.1f} s. Results in {store.root_url}:"
    )
    if ok:
        _print_release(store)
    width = max((len(k) for k in paths), default=0)
    for label, path in paths.items():
        print(f"  {label:<{width}}  {path}")
    from dataset_pipeline.store import ENDPOINT_VARIABLE

    endpoint = os.environ.get(ENDPOINT_VARIABLE)
    print(
        f"See every materialization in the UI:  DAGSTER_HOME={home} DATASET_PIPELINE_STORE={store.root_url} "
        + (f"{ENDPOINT_VARIABLE}={endpoint} " if endpoint and not store.is_local else "")
        + f"DATASET_PIPELINE_GUIDELINE={rules_path} DATASET_PIPELINE_ANNOTATORS={roster} .venv/bin/dagster dev"
    )
    return 0 if ok else 1


class Interrupted(Exception):
    """Ctrl-C during a stage: which stage, for the message."""

    def __init__(self, stage: str) -> None:
        super().__init__(stage)
        self.stage = stage


def _run_plan(iter_stages, plan, paths: dict[str, str], first: int, total: int) -> bool:
    """Run ``plan`` and print each stage's figures, checks and errors as it ends; a failed blocking
    check is printed whole (what it found, the setting that decides it) with what it holds back."""
    done = 0
    try:
        for index, outcome in enumerate(iter_stages(plan), start=first):
            done += 1
            status = "ok" if outcome.passed else "FAILED"
            print(f"[{index}/{total}] {outcome.asset}: {status} (run {outcome.run_id[:8]})", flush=True)
            if outcome.figures:
                print(
                    "      " + ", ".join(f"{k}={v}" for k, v in outcome.figures.items() if len(str(v)) < 80)
                )
            for check in outcome.checks:
                lines = check.description.splitlines() or [""]
                print(f"      check {check.name}: {check.status} - {lines[0]}")
                if check.status == "FAILED":
                    for line in lines[1:]:
                        print(f"            {line}")
                    if check.gates:
                        print(f"            it holds back: {', '.join(check.gates)} (and what follows them)")
            if outcome.error:
                print(f"      error: {outcome.error}")
            paths |= {f"{outcome.asset}: {k}": v for k, v in outcome.paths.items()}
            if not outcome.passed:
                print(
                    "      the run's log in the Dagster UI has the details; after the fix, the same command "
                    "runs again on the upload and the reviews already written"
                )
                return False
    except KeyboardInterrupt:
        _, asset, partition = plan[min(done, len(plan) - 1)]
        raise Interrupted(f"{asset} [{partition}]" if partition else asset) from None
    return True


def _print_release(store) -> None:
    """Where the release is, that it is complete, and what ``releases/latest.json`` names."""
    from dataset_pipeline.dataset_release import latest_release, release_folder
    from dataset_pipeline.layout import RELEASE_LATEST_KEY, RELEASE_MANIFEST_FILE

    latest = latest_release(store)
    if latest is None:
        return
    manifest = store.url(release_folder(store, latest["version"]).key(RELEASE_MANIFEST_FILE))
    print(f"release {latest['version']}: complete ({manifest})")
    print(f"  {store.url(RELEASE_LATEST_KEY)} names it (completed {latest['completed_at']})")


def _ensure_demo_review(store, batch: str, seed: int, *, revise: bool = False):
    """The simulated annotators' exports, written once into reviews/<batch>/ (as people would);
    ``revise``: the team adopts the revised guideline half-way through (demo revision 2)."""
    from dataset_pipeline.demo import simulate_review
    from dataset_pipeline.layout import review_prefix
    from dataset_pipeline.reviewed_annotations import list_review_exports

    if list_review_exports(store, batch):
        print(f"review exports in {store.url(review_prefix(batch))} exist already: reusing them")
        return None
    started = time.perf_counter()
    review = simulate_review(store, batch, seed, revise=revise)
    print(
        f"simulated annotators reviewed {review.images} images ({review.gold_images} gold, "
        f"{review.annotations} masks) into "
        f"{store.url(review_prefix(batch))} in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    return review


def _propagate(args: argparse.Namespace) -> int:
    from dataset_pipeline.episode_propagation import make_propagator
    from dataset_pipeline.episode_propagation.consistency import episode_consistency
    from dataset_pipeline.episode_propagation.folder import propagate_folder

    backend = args.backend if args.backend != "auto" else ("sam2" if args.checkpoint else "flow")
    started = time.perf_counter()
    propagator = make_propagator(
        backend, checkpoint=args.checkpoint, model_config=args.config, device=args.device
    )
    result = propagate_folder(
        Path(args.frames_dir), Path(args.keyframe_masks_dir), Path(args.out), propagator
    )
    seconds = time.perf_counter() - started
    print(f"backend {propagator.name} ({propagator.model_version})")
    for frame, name in zip(result.frames, result.names, strict=True):
        if frame.is_keyframe:
            print(f"  {name}: keyframe")
        else:
            sources = ", ".join(result.names[k] for k in frame.sources)
            print(
                f"  {name}: propagated from {sources} (distance {frame.distance}, confidence {frame.confidence:.3f})"
            )
    consistency = episode_consistency(result.episode, [f.labels for f in result.frames])
    print("temporal consistency (flow-warped IoU of consecutive frames, per id):")
    for label, (count, mean, worst, at) in consistency.per_class().items():
        print(f"  id {label}: mean {mean:.3f}, min {worst:.3f} at {result.names[at]} ({count} transitions)")
    for flicker in consistency.flickers:
        print(
            f"  flicker: id {flicker.class_id} {flicker.kind} at {result.names[flicker.start]} for {flicker.length} frame(s)"
        )
    propagated = sum(not f.is_keyframe for f in result.frames)
    print(f"{len(result.frames)} frames written to {args.out} ({propagated} propagated, {seconds:.1f} s)")
    return 0


def _ml_backend_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=9090, help="port (default 9090, as Label Studio's examples)"
    )
    parser.add_argument(
        "--checkpoint", default=None, help="SAM 2 checkpoint (.pt; default $DATASET_PIPELINE_SAM2_CHECKPOINT)"
    )
    parser.add_argument("--config", default=None, help="sam2 config (default $DATASET_PIPELINE_SAM2_CONFIG)")
    parser.add_argument(
        "--detector",
        default=None,
        help="OWLv2 folder for batch predictions (default $DATASET_PIPELINE_DETECTOR)",
    )
    parser.add_argument("--device", default=None, help="auto (default), cuda, cpu")
    parser.add_argument("--taxonomy", default=None, help="taxonomy YAML (default $DATASET_PIPELINE_TAXONOMY)")
    parser.add_argument(
        "--label-studio-url",
        default=None,
        help="Label Studio's URL, for its image paths (default $LABEL_STUDIO_URL)",
    )
    parser.add_argument(
        "--label-studio-token",
        default=None,
        help="a Label Studio access token, to read its images (default $LABEL_STUDIO_API_KEY)",
    )
    parser.add_argument(
        "--basic-auth",
        default=None,
        metavar="USER:PASSWORD",
        help="require HTTP basic auth (default $BASIC_AUTH_USER / $BASIC_AUTH_PASS)",
    )
    parser.add_argument("--cache-size", type=int, default=16, help="image embeddings kept (default 16)")


def _ml_backend(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from dataset_pipeline.interactive.label_studio import build_backend, create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    user, _, password = (args.basic_auth or "").partition(":")
    user = user or os.environ.get("BASIC_AUTH_USER", "")
    password = password or os.environ.get("BASIC_AUTH_PASS", "")
    backend = build_backend(
        checkpoint=args.checkpoint,
        model_config=args.config,
        detector=args.detector,
        device=args.device,
        taxonomy=args.taxonomy or os.environ.get("DATASET_PIPELINE_TAXONOMY") or None,
        label_studio_url=args.label_studio_url or os.environ.get("LABEL_STUDIO_URL") or None,
        label_studio_token=args.label_studio_token or os.environ.get("LABEL_STUDIO_API_KEY") or None,
        cache_size=args.cache_size,
    )
    print(f"model {backend.model_version} on {backend.session.backend.device}: {backend.note()}", flush=True)
    app = create_app(backend, basic_auth=(user, password) if user and password else None)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


#: When the demo team's first guideline revision took effect: before any of its annotations.
DEMO_FIRST_RULES_AT = "2026-11-24T00:00:00+00:00"


def _demo_rules(path: Path, revision: int, effective: str) -> None:
    from datetime import datetime

    from dataset_pipeline.demo import write_demo_rules

    write_demo_rules(path, revision, datetime.fromisoformat(effective))
    print(f"guideline rules (demo revision {revision}, effective {effective}) written to {path}", flush=True)


def _revised_at(state: Path, store, batch: str) -> str:
    """When the demo team adopted its revised guideline (the simulated review says, and the demo keeps
    it in its Dagster home); for reviews simulated by an earlier run that did not keep it, the
    middle of the batch's annotation times."""
    import pandas as pd

    from dataset_pipeline.layout import annotations_key

    if state.exists():
        return str(json.loads(state.read_text())["revised_at"])
    times = pd.to_datetime(store.read_parquet(annotations_key(batch)).created_at, utc=True, format="ISO8601")
    return times.dropna().sort_values().iloc[len(times.dropna()) // 2].isoformat()


def _ensure_demo_verdicts(store, batch: str, seed: int) -> None:
    """The verdicts on the QC samples, written once (as the reviewers would drop their sheets)."""
    from dataset_pipeline.demo import simulate_qc_verdicts
    from dataset_pipeline.layout import expert_audit_key, peer_review_key

    if store.exists(peer_review_key(batch)) or store.exists(expert_audit_key(batch)):
        print(f"QC verdicts for {batch} exist already: reusing them")
        return
    peer, audit = simulate_qc_verdicts(store, batch, seed)
    print(
        f"simulated reviewers returned {peer} peer-review and {audit} expert-audit verdicts into "
        f"{store.url(peer_review_key(batch))} and {store.url(expert_audit_key(batch))}",
        flush=True,
    )


def _ensure_demo_corrections(store, batch: str, seed: int) -> None:
    """The correction round's export, written once (as the people of the first round would)."""
    from dataset_pipeline.demo import corrections_export_key, simulate_corrections

    key = corrections_export_key(batch)
    if store.exists(key):
        print(f"corrections {store.url(key)} exist already: reusing them")
        return
    started = time.perf_counter()
    review = simulate_corrections(store, batch, seed)
    print(
        f"simulated annotators checked {review.images} propagated frames ({review.annotations} masks) into "
        f"{store.url(key)} in {time.perf_counter() - started:.1f} s",
        flush=True,
    )


def _import_review(args: argparse.Namespace) -> int:
    from dataset_pipeline.formats.importing import ImportOptions
    from dataset_pipeline.formats.reading import import_any
    from dataset_pipeline.store import DatasetStore
    from dataset_pipeline.taxonomy import load_taxonomy

    taxonomy = load_taxonomy(args.taxonomy)
    label_map = {}
    for item in args.label_map:
        name, sep, target = item.partition("=")
        if not sep or not name or not target:
            raise ValueError(f"--label-map wants NAME=CLASS, got {item!r}")
        label_map[name] = target
    path = Path(args.path)
    options = ImportOptions(
        taxonomy,
        source_file=str(path),
        label_map=label_map,
        images=_image_index(Path(args.images)) if args.images else None,
        default_annotator=args.annotator,
        review_status=args.review_status,
    )
    result = import_any(path.read_bytes(), options, args.format)
    out = Path(args.out).resolve()
    DatasetStore(str(out.parent)).write_parquet(out.name, result.annotations)
    print(result.summary(taxonomy))
    print(f"wrote {len(result.annotations)} annotation(s) to {out}")
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from dataset_pipeline import layout
    from dataset_pipeline.formats.robot_dataset import RobotDatasetError, check_cameras
    from dataset_pipeline.formats.robot_sources import describe_upload
    from dataset_pipeline.robot_datasets import (
        IngestSettings,
        copy_into_upload,
        frames_per_episode_text,
        ingest_dataset,
    )
    from dataset_pipeline.store import StoreConfig

    source_dir = Path(args.source).resolve()
    if not source_dir.is_dir():
        raise ValueError(f"{args.source}: no such folder")
    batch = layout.check_batch_name(args.batch or source_dir.name)
    settings = IngestSettings(tuple(args.camera), args.every, args.fps, args.lighting)
    store = StoreConfig.from_environment(args.out).open()
    # Everything that can refuse the dataset is asked before anything is stored.
    source = describe_upload(source_dir)
    if source.metadata.get("already_segmented"):
        raise RobotDatasetError(
            f"{source_dir}: the dataset already has a segmentation feature (a written-back copy?); ingest the original"
        )
    check_cameras(source, settings.cameras)
    settings.picks(source)
    if store.list(layout.upload_prefix(batch), recursive=True):
        raise ValueError(
            f"{store.url(layout.upload_prefix(batch))}: batch {batch!r} exists; uploads are never replaced "
            "(choose another --batch)"
        )
    copied = copy_into_upload(source_dir, store, batch, settings)
    result = ingest_dataset(store, batch, settings, root=source_dir)
    print(
        f"{source.kind} {source.version} dataset: {len(source.episodes)} episodes, fps {source.fps or 'not given'}, "
        f"robot {source.robot_type or 'not given'}, cameras {', '.join(source.cameras)}"
    )
    print(f"copied {copied} file(s) to {store.url(layout.upload_prefix(batch))}")
    print(f"sampled {result.frames} frame(s) in {result.seconds:.1f} s:")
    print(frames_per_episode_text(result), end="")
    print(f"manifest: {store.url(layout.frames_manifest_key(batch))}")
    return 1 if not result.frames else 0


def _write_back(args: argparse.Namespace) -> int:
    import pandas as pd

    from dataset_pipeline import layout
    from dataset_pipeline.formats.robot_sources import describe_upload
    from dataset_pipeline.formats.write_back.core import check_write_back, episode_masks, write_back
    from dataset_pipeline.taxonomy import load_taxonomy

    source_dir, out = Path(args.source).resolve(), Path(args.out).resolve()
    if out.exists():
        raise ValueError(f"--out {out}: exists; write-back makes a new folder")
    source = describe_upload(source_dir)
    annotations = pd.read_parquet(args.annotations)
    cameras = {layout.camera_folder(c): c for c in source.cameras}
    rows = []
    for image_id in sorted(set(annotations.image_id)):
        parsed = layout.parse_frame_image_id(str(image_id))
        if parsed is None or parsed[1] not in cameras:
            raise ValueError(
                f"{args.annotations}: image {image_id!r} (field 'image_id') is no frame of {source_dir} as ingest "
                "names them (<batch>/<camera>/episode_<n>/frame_<n>)"
            )
        batch, camera, episode, frame = parsed
        rows.append(
            {
                "image_id": image_id,
                "camera_model": cameras[camera],
                "source_episode": episode,
                "frame_index": frame,
                "batch": batch,
            }
        )
    captures = pd.DataFrame(
        rows, columns=["image_id", "camera_model", "source_episode", "frame_index", "batch"]
    )
    batches = sorted(set(captures.batch)) or [source_dir.name]
    masks = episode_masks(source, captures, annotations)
    taxonomy = load_taxonomy(args.taxonomy)
    written = write_back(
        source_dir,
        source,
        masks,
        out,
        batch=layout.check_batch_name(batches[0]),
        class_names=taxonomy.names,
    )
    problems = check_write_back(source_dir, source, masks, written, batch=batches[0])
    print(
        f"wrote {written.kind} dataset {written.directory}: {written.episodes} episodes, {written.frames} frames, "
        f"{written.labelled_frames} labelled ({written.frames - written.labelled_frames} flagged none) "
        f"in {written.seconds:.1f} s"
    )
    if problems:
        print("read back with the format's library: " + "; ".join(problems), file=sys.stderr)
        return 1
    print(
        "read back with the format's library: every frame's class map and flag equal, the source's values unchanged"
    )
    return 0


def _image_index(source: Path):
    """An ImageIndex from a manifest CSV (sizes read from the image headers beside it) or a folder."""
    from PIL import Image

    from dataset_pipeline.formats.image_index import ImageIndex, ImageRef
    from dataset_pipeline.raw_captures import image_id_for, read_manifest

    if source.is_file():
        manifest = read_manifest(source.read_bytes(), str(source))
        folder, batch = source.parent, source.parent.name
        files = [
            (row.image_file, row.image_id or image_id_for(batch, row.image_file))
            for row in manifest.itertuples()
        ]
    elif source.is_dir():
        folder, batch = source, source.name
        files = [
            (str(p.relative_to(source)), image_id_for(batch, str(p.relative_to(source))))
            for p in sorted(source.rglob("*"))
            if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
        ]
    else:
        raise ValueError(f"--images {source}: no such manifest or folder")
    refs = []
    for relative, image_id in files:
        try:
            with Image.open(folder / relative) as image:
                width, height = image.size
        except OSError as exc:
            raise ValueError(f"--images: cannot read {folder / relative} ({exc})") from None
        refs.append((ImageRef(image_id, height, width), relative))
    return ImageIndex(refs)


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

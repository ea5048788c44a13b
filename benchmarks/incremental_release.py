"""Incremental releases: a release that adds 1% of the images, against the full export of the same
content, in the same process.

Data: ``--batches`` demo batches of ``--per-batch`` images each (640x480, ``dataset_pipeline.demo``,
~9 instances an image, episodes of 8 frames, made unique per batch), the demo's ground truth as
the labels, split by scene. Prepared once into ``--work``. Timed (wall seconds, medians of ``--repeats``):

* ``full``: release 1, every batch but the last, exported whole (``write_exports``, no reuse);
* ``incremental``: release 2 = release 1 + the last batch (1% of the images by default), exported
  with ``reusable`` = release 1's files: unchanged images, per-image formats, HDF5 shards and
  episode files are hard links, the rest is made;
* ``peer``: the same release-2 content exported whole into another folder (what every release
  cost before), so the ratio is against the same work done the old way;
* each release's reload checks (``check_verdicts``, every format, as its check steps run them):
  the incremental one leaves out the files it shares with release 1.

Reported: seconds per step and per format, bytes made and shared (the release index), and their
shares of the peer's. Formats: all of the release's except ``rlds`` (its writer runs in
``.tfds-venv`` through Dagster Pipes, outside this process).

    .venv/bin/python benchmarks/incremental_release.py --batches 10 --per-batch 200
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def prepare(work: Path, batches: int, per_batch: int, last: int):
    """The store with every batch uploaded and ingested, and the tables of both releases."""
    import pandas as pd

    from dataset_pipeline.demo import ground_truth_annotations, write_demo_upload
    from dataset_pipeline.raw_captures import ingest_batch
    from dataset_pipeline.store import DatasetStore

    store = DatasetStore(str(work / "store"))
    marker = work / "prepared.json"
    plan = {"batches": batches, "per_batch": per_batch, "last": last}
    if not (marker.exists() and json.loads(marker.read_text()) == plan):
        shutil.rmtree(work, ignore_errors=True)
        store = DatasetStore(str(work / "store"))
        for b in range(batches):
            name = f"b{b:03d}"
            upload = write_demo_upload(store, name, n_images=last if b == batches - 1 else per_batch, seed=b)
            captures = ingest_batch(store, name).captures
            store.write_parquet(f"bench/{name}/captures.parquet", captures)
            store.write_parquet(
                f"bench/{name}/annotations.parquet",
                ground_truth_annotations(store.read_parquet(upload.ground_truth_key)),
            )
        marker.write_text(json.dumps(plan))
    names = [f"b{b:03d}" for b in range(batches)]
    images = [store.read_parquet(f"bench/{n}/captures.parquet") for n in names]
    labels = [store.read_parquet(f"bench/{n}/annotations.parquet") for n in names]
    scenes = sorted(set().union(*(set(i.scene_id) for i in images)))
    split_of = {s: ("train", "val", "test")[k % 3] for k, s in enumerate(scenes)}

    def tables(count: int):
        i = pd.concat(images[:count], ignore_index=True)
        return (
            i,
            pd.concat(labels[:count], ignore_index=True),
            i[["image_id"]].assign(split=i.scene_id.map(split_of)),
        )

    return store, tables(batches - 1), tables(batches)


def export(store, tables, version: str, formats: list[str], reusable=None, check: bool = True) -> dict:
    from dataset_pipeline import dataset_release as release
    from dataset_pipeline.taxonomy import load_taxonomy

    content = release.ReleaseContent(store, load_taxonomy(), *tables, info={"description": "benchmark"})
    started = time.perf_counter()
    outcome = release.write_exports(content, version, formats, reusable=reusable)
    seconds = time.perf_counter() - started
    checked, problems = time.perf_counter(), []
    if check:  # every format's reload check, as the release's check steps run them (shared files left out)
        selected = {"class_ids_consistent", *(f"{fmt}_reloads" for fmt in formats)}
        verdicts = release.check_verdicts(content, version, selected, read_shared=False)
        problems = [name for name, verdict in verdicts if not verdict.passed]
    if problems:
        raise RuntimeError(f"release {version}: checks failed: {problems}")
    return {
        "seconds": seconds,
        "check_seconds": time.perf_counter() - checked,
        "per_step": outcome.seconds,
        "images": len(content.images),
        "bytes_made": outcome.bytes_written,
        "bytes_shared": outcome.bytes_linked,
        "files_made": outcome.files_written,
        "files_shared": outcome.files_linked,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--per-batch", type=int, default=200)
    parser.add_argument("--added", type=float, default=0.01, help="share of images the last batch adds")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/dp-incremental-bench"))
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "incremental_release.json"
    )
    args = parser.parse_args()

    from dataset_pipeline import dataset_release as release
    from dataset_pipeline import layout
    from dataset_pipeline.formats.exporting import ReusableFiles

    last = max(1, round(args.added * args.per_batch * (args.batches - 1)))
    store, first, second = prepare(args.work, args.batches, args.per_batch, last)
    formats = [f for f in release.DEFAULT_FORMATS if f != "rlds"]
    runs: dict[str, list[dict]] = {"full": [], "incremental": [], "peer": []}

    def remove(version: str) -> None:  # the release and its shards' index parts (present = done)
        for prefix in (f"releases/{version}", layout.join_key(layout.RELEASE_PARTS, version)):
            shutil.rmtree(store.path(prefix), ignore_errors=True)

    for repeat in range(args.repeats):
        for name in ("full", "incremental", "peer"):
            remove(f"{name}-{repeat}")
        runs["full"].append(export(store, first, f"full-{repeat}", formats, check=False))
        reusable = ReusableFiles.of_release(store, f"releases/full-{repeat}")
        runs["incremental"].append(export(store, second, f"incremental-{repeat}", formats, reusable))
        runs["peer"].append(export(store, second, f"peer-{repeat}", formats))
        print(json.dumps({k: v[-1] for k, v in runs.items()}, indent=1), flush=True)
        for name in ("full", "incremental", "peer"):
            remove(f"{name}-{repeat}")

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    def median_step(name: str) -> dict[str, float]:
        return {
            k: round(statistics.median(r["per_step"][k] for r in runs[name]), 3)
            for k in runs[name][0]["per_step"]
        }

    peer_bytes = median("peer", "bytes_made")
    summary = {
        "images": {
            "release_1": runs["full"][0]["images"],
            "release_2": runs["peer"][0]["images"],
            "added": last,
        },
        "formats": formats,
        "seconds": {n: round(median(n, "seconds"), 2) for n in runs},
        "check_seconds": {n: round(median(n, "check_seconds"), 2) for n in ("incremental", "peer")},
        "per_step_seconds": {n: median_step(n) for n in runs},
        "incremental_time_share": round(median("incremental", "seconds") / median("peer", "seconds"), 4),
        "incremental_check_time_share": round(
            median("incremental", "check_seconds") / median("peer", "check_seconds"), 4
        ),
        "incremental_bytes_made": int(median("incremental", "bytes_made")),
        "incremental_bytes_shared": int(median("incremental", "bytes_shared")),
        "peer_bytes_made": int(peer_bytes),
        "incremental_bytes_share": round(median("incremental", "bytes_made") / peer_bytes, 4),
        "repeats": args.repeats,
    }
    print(json.dumps(summary, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()

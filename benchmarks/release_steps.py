"""One release step's peak memory and time against corpus size: what a shard's export step and its
check step cost at 10k images and at 4x that, for the same size of shard.

Data: the synthetic corpora of ``benchmarks/corpus_stages.py`` (small 80x60 images copied from a
reviewed demo batch, ``--per-batch`` images a batch), taken through the corpus stages. Then, each
in a child process of its own with the step processes' environment (``ARROW_DEFAULT_MEMORY_POOL=
system``): ``load`` = ``load_release`` alone (the corpus tables, the reference labels, the version
digest: what every release step does first); ``export_shard`` = that, then the first shard's
export (images, YOLO, PNG, its HDF5 shard); ``check_shard`` = that, then the shard's reload checks.
Peak RSS = the child's VmHWM.

    .venv/bin/python benchmarks/release_steps.py --sizes 10000 40000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FORMATS = ["coco", "yolo_seg", "semantic_png", "hdf5"]
CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
from dataset_pipeline import dataset_release as release
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.taxonomy import load_taxonomy
store, step, formats = DatasetStore(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
started = time.perf_counter()
content, version = release.load_release(store, load_taxonomy(), formats, {{}})
loaded = time.perf_counter() - started
split, shard = release.release_shards(content)[0]
if step in ("export_shard", "check_shard"):
    release.export_shard(content, version, formats, split, shard, threads=1)
if step == "check_shard":
    release.check_shard(content, version, formats, split, shard, run="bench")
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({{"seconds": time.perf_counter() - started, "load_seconds": loaded,
                  "peak_rss_mib": int(hwm) / 1024, "shard_images": len(dict(content.shards(split))[shard])}}))
"""
STEPS = ("load", "export_shard", "check_shard")


def run_step(root: Path, step: str) -> dict:
    from benchmarks.corpus_stages import run_child

    return run_child(CHILD.format(root=str(ROOT)), str(root), step, json.dumps(FORMATS))


def main() -> None:
    from benchmarks.corpus_stages import STAGES, run_stage, template, write_batch

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 40_000])
    parser.add_argument("--per-batch", type=int, default=1_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-release-steps"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "release_steps.json")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    captures, annotations, pixels = template(args.work)
    results = []
    for size in args.sizes:
        root = args.work / f"corpus-{size}"
        started = time.perf_counter()
        for b in range(size // args.per_batch):
            write_batch(root, f"b{b:04d}", args.per_batch, captures, annotations, pixels, seed=b)
        for stage in STAGES:
            run_stage(root, stage)
        prepared = time.perf_counter() - started
        result = {"images": size, "prepare_s": round(prepared, 1), **{s: run_step(root, s) for s in STEPS}}
        results.append(result)
        print(json.dumps(result), flush=True)
        shutil.rmtree(root)
    args.out.write_text(
        json.dumps({"cpus": os.cpu_count(), "formats": FORMATS, "results": results}, indent=1)
    )


if __name__ == "__main__":
    main()

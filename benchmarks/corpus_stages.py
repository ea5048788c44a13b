"""The corpus-wide stages batch by batch: peak memory and time against corpus size, and a rebuild
after +1% images against the first build, in the same session.

Data: synthetic corpora of ``--sizes`` images in batches of ``--per-batch``, small images (80x60
JPEG, said so in the README): a reviewed 24-image demo batch (rendered, pre-masked by the
classical backend, reviewed by the simulated annotators, imported: gold images, several
annotators, pre-mask links) is scaled down to 80x60 (images and masks) and copied, each copy with
its own ids, scene, episodes and pixel noise (so every sha256 and dHash differs). The batches'
tables are written where ``reviewed_annotations`` and ``raw_captures`` write them.

Timed, each stage in its own child process (wall seconds; peak RSS = the child's VmHWM), its
environment as docs/deploy.md gives a step process (``ARROW_DEFAULT_MEMORY_POOL=system``):
``annotation_corpus.update_corpus``, ``quality_report.update_report``,
``agreement_report.update_agreement`` (Boundary IoU on), ``dataset_splits.update_splits`` - first
on the corpus (every batch made), then after one more batch of 1% of the images (only it is
made; the rest kept).

    .venv/bin/python benchmarks/corpus_stages.py --sizes 10000 50000 100000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZE = (80, 60)
CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.taxonomy import load_taxonomy
store, stage = DatasetStore(sys.argv[1]), sys.argv[2]
started = time.perf_counter()
if stage == "annotation_corpus":
    from dataset_pipeline.annotation_corpus import update_corpus
    made = update_corpus(store).made
elif stage == "quality_report":
    from dataset_pipeline.quality_report import update_report
    made = update_report(store, load_taxonomy()).made
elif stage == "agreement_report":
    from dataset_pipeline.agreement_report import update_agreement
    made = update_agreement(store, load_taxonomy()).made
else:
    from dataset_pipeline.dataset_splits import update_splits, write_splits
    outcome = update_splits(store, load_taxonomy())
    write_splits(store, outcome)
    made = outcome.made
seconds = time.perf_counter() - started
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({{"seconds": seconds, "peak_rss_mib": int(hwm) / 1024, "made": len(made)}}))
"""
STAGES = ("annotation_corpus", "quality_report", "agreement_report", "dataset_splits")


def template(work: Path):
    """A reviewed 24-image demo batch, scaled to 80x60: (captures, annotations, jpeg pixels)."""
    import cv2
    import numpy as np

    from dataset_pipeline import layout
    from dataset_pipeline.masks import decode_mask, encode_mask
    from dataset_pipeline.store import DatasetStore
    from tests.conftest import reviewed_demo

    store = DatasetStore(str(work / "template"))
    corpus = reviewed_demo(store, "tpl", n_images=24, seed=0)
    captures = store.read_parquet(layout.captures_key("tpl"))
    annotations = store.read_parquet(layout.annotations_key("tpl"))
    pixels = {}
    for row in captures.itertuples():
        image = cv2.imdecode(np.frombuffer(store.read_bytes(row.uri), np.uint8), cv2.IMREAD_COLOR)
        pixels[row.image_id] = cv2.resize(image, SIZE, interpolation=cv2.INTER_AREA)
    small = [
        encode_mask(
            cv2.resize(decode_mask(r.rle, r.height, r.width).astype(np.uint8), SIZE, interpolation=0).astype(
                bool
            )
        )
        for r in annotations.itertuples()
    ]
    annotations = annotations.assign(rle=small, width=SIZE[0], height=SIZE[1])
    captures = captures.assign(width=SIZE[0], height=SIZE[1])
    del corpus
    return captures, annotations, pixels


def write_batch(root: Path, batch: str, n: int, captures, annotations, pixels, seed: int) -> None:
    """``n`` images copied from the template into batch ``batch`` (its upload and its tables)."""
    import hashlib

    import cv2
    import numpy as np
    import pandas as pd

    from dataset_pipeline import layout
    from dataset_pipeline.store import DatasetStore

    store = DatasetStore(str(root))
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for k in range(n):
        source = captures.iloc[k % len(captures)]
        copy = k // len(captures)
        stem = f"c{copy:05d}-{source.image_id.rsplit('/', 1)[-1]}"
        # a coarse random shading (its own dHash: copies are not near-duplicates) and pixel noise
        shading = cv2.resize(rng.integers(-40, 41, (8, 9)).astype(np.float32), SIZE)[..., None]
        noise = rng.integers(-6, 7, pixels[source.image_id].shape, dtype=np.int16) + shading.astype(np.int16)
        image = np.clip(pixels[source.image_id].astype(np.int16) + noise, 0, 255).astype(np.uint8)
        jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        key = layout.upload_file(batch, f"images/{stem}.jpg")
        path = Path(store.path(key))  # bulk preparation: plain writes, not the store's fsynced uploads
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jpeg)
        image_id = f"{batch}/{stem}"
        rows.append(
            source.to_dict()
            | {
                "image_id": image_id,
                "uri": key,
                "sha256": hashlib.sha256(jpeg).hexdigest(),
                "batch": batch,
                "scene_id": f"{batch}-s{copy // 4}",
                "episode_id": f"{batch}-c{copy}-{source.episode_id}",
                "depth_uri": None,
            }
        )
        mine = annotations[annotations.image_id == source.image_id]
        labels.append(
            mine.assign(
                image_id=image_id,
                annotation_id=[f"{image_id}#{i}" for i in range(len(mine))],
            )
        )
    store.write_parquet(layout.captures_key(batch), pd.DataFrame(rows))
    store.write_parquet(layout.annotations_key(batch), pd.concat(labels, ignore_index=True))


def run_child(script: str, *args: str) -> dict:
    """``script`` in a child process, as docs/deploy.md runs every step process (pyarrow on the C
    allocator from its first allocation); the JSON of its last line."""
    env = {**os.environ, "ARROW_DEFAULT_MEMORY_POOL": "system"}
    out = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, check=True, env=env
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_stage(root: Path, stage: str) -> dict:
    return run_child(CHILD.format(root=str(ROOT)), str(root), stage)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 100_000])
    parser.add_argument("--per-batch", type=int, default=1_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-corpus-stages"))
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
        prepared = time.perf_counter() - started
        first = {stage: run_stage(root, stage) for stage in STAGES}
        write_batch(root, "b9999", size // 100, captures, annotations, pixels, seed=9999)  # +1%
        again = {stage: run_stage(root, stage) for stage in STAGES}
        result = {"images": size, "prepare_s": round(prepared, 1), "first": first, "plus_1pct": again}
        results.append(result)
        print(json.dumps(result), flush=True)
        shutil.rmtree(root)
    out = ROOT / "benchmarks" / "results" / "corpus_stages.json"
    out.write_text(json.dumps({"cpus": os.cpu_count(), "results": results}, indent=1))


if __name__ == "__main__":
    main()

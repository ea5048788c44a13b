"""Release export speed and memory: this project's exporters against Datumaro, same data, same session.

Data: ``--images`` demo images at 640x480 (``dataset_pipeline.demo``, ~9 instances each), the
demo's ground truth as the labels, split scene-wise. Prepared once, before timing, into
``--work`` (kept between runs): the upload and the store's corpus, agreement and splits tables as
the pipeline's stages write them, and a COCO copy of the corpus (images +
``annotations/instances_<split>.json``) for Datumaro to import.

Timed, each in its own child process (wall seconds; peak RSS = the child's VmHWM), ``--repeats``
times, medians reported:

* ``ours``: what the ``dataset_release`` asset does - ``dataset_release.load_release`` (the corpus
  tables, the reference labels, the version digest) then ``write_exports`` of COCO (RLE) + YOLO-seg
  + semantic PNG masks + the images into the release folder;
* ``datumaro``: ``Dataset.import_from(<coco copy>, "coco_instances")`` then export the same
  three formats with media: ``coco_instances`` (segmentation_mode="mask"), ``yolo_ultralytics`` and
  ``voc_segmentation`` (palette class PNGs, plus instance PNGs). Datumaro 1.13 has no YOLO
  *segmentation* exporter: its ``yolo_ultralytics`` writes boxes only, so that leg does less work
  than ours (no contour tracing) - the comparison favours Datumaro there. Datumaro runs in its
  own virtual environment (``--datumaro-python``): it pins other versions than this project.

Also: random access to one (image, class map) pair of the HDF5 export (``hdf5.read_pair``),
median over 200 random indices, file opened per read as a data loader worker would; timed before
the exports, on a quiet disk, with the file in the page cache (read through once first).

    python -m venv /tmp/dmvenv && /tmp/dmvenv/bin/pip install datumaro==1.13.12
    .venv/bin/python benchmarks/export.py --images 1000 --datumaro-python /tmp/dmvenv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATUMARO_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import datumaro as dm
source, target = sys.argv[1], sys.argv[2]
dataset = dm.Dataset.import_from(source, "coco_instances")
dataset.export(f"{target}/coco", "coco_instances", save_media=True, segmentation_mode="mask")
dataset.export(f"{target}/yolo", "yolo_ultralytics", save_media=True)
dataset.export(f"{target}/png", "voc_segmentation", save_media=True)
seconds = time.perf_counter() - t0
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"seconds": seconds, "peak_rss_mib": int(hwm) / 1024, "items": len(dataset)}))
"""


def _peak_mib() -> float:
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith("VmHWM")).split()[1]) / 1024


FORMATS = ["coco", "yolo_seg", "semantic_png"]
#: The release prepare() writes once: Datumaro's COCO input and the HDF5 file read at random.
SOURCE_RELEASE = "coco-source"


def _source_path(work: Path, relative: str = "") -> str:
    """The local path of the source release's folder (or of a file in it)."""
    from dataset_pipeline.dataset_release import release_folder
    from dataset_pipeline.store import DatasetStore

    store = DatasetStore(str(work / "store"))
    folder = release_folder(store, SOURCE_RELEASE)
    return store.path(folder.key(relative) if relative else folder.prefix)


def prepare(work: Path, n_images: int) -> None:
    """Upload, the corpus / agreement / splits tables and the COCO copy, once."""
    from dataset_pipeline import dataset_release as release
    from dataset_pipeline import layout
    from dataset_pipeline.agreement_report import compute_agreement, write_report
    from dataset_pipeline.annotation_corpus import Corpus, write_corpus
    from dataset_pipeline.demo import ground_truth_annotations, write_demo_upload
    from dataset_pipeline.raw_captures import ingest_batch
    from dataset_pipeline.schemas import SPLITS
    from dataset_pipeline.store import DatasetStore
    from dataset_pipeline.taxonomy import load_taxonomy

    marker = work / "prepared.json"
    if marker.exists() and json.loads(marker.read_text())["images"] == n_images:
        return
    shutil.rmtree(work, ignore_errors=True)
    store = DatasetStore(str(work / "store"))
    taxonomy = load_taxonomy()
    upload = write_demo_upload(store, "bench", n_images=n_images, seed=0)
    images = ingest_batch(store, "bench").captures
    annotations = ground_truth_annotations(store.read_parquet(upload.ground_truth_key))
    scenes = sorted(images.scene_id.unique())
    split_of = {s: ("train", "val", "test")[i % 3] for i, s in enumerate(scenes)}
    write_corpus(store, Corpus(annotations=annotations, images=images, batches=["bench"]))
    write_report(store, compute_agreement(annotations, taxonomy))
    splits = {"image_id": images.image_id, "split": images.scene_id.map(split_of), "group": 0, "dhash": ""}
    store.write_parquet(layout.SPLITS_KEY, SPLITS.from_columns(splits))
    content, _ = release.load_release(store, taxonomy, ["coco", "hdf5"], {})
    release.write_exports(content, SOURCE_RELEASE, ["coco", "hdf5"])
    marker.write_text(json.dumps({"images": n_images, "instances": len(annotations)}))


def run_ours(work: Path, threads: int = 0) -> dict:
    """The dataset_release asset's work, timed from the imports on; the release folder is removed."""
    t0 = time.perf_counter()
    from dataset_pipeline import dataset_release as release
    from dataset_pipeline.store import DatasetStore
    from dataset_pipeline.taxonomy import load_taxonomy

    store = DatasetStore(str(work / "store"))
    content, version = release.load_release(store, load_taxonomy(), FORMATS, {"description": "benchmark"})
    outcome = release.write_exports(content, version, FORMATS, threads=threads)
    result = {
        "seconds": time.perf_counter() - t0,
        "peak_rss_mib": _peak_mib(),
        "files": sum(len(v) for v in outcome.written.values()),
        "reused": outcome.reused,
    }
    shutil.rmtree(store.path(release.release_folder(store, version).prefix))
    return result


def hdf5_access(work: Path, reads: int = 200) -> float:
    import h5py
    import numpy as np

    from dataset_pipeline.formats.hdf5 import exporter as hdf5

    path = _source_path(work, hdf5.split_file("train"))

    with h5py.File(path, "r") as handle:
        n = len(handle["image_ids"])
    with open(path, "rb") as warm:  # in the page cache, as from a training loop's second epoch on
        while warm.read(1 << 24):
            pass
    rng = np.random.default_rng(0)
    times = []
    for index in rng.integers(0, n, reads):
        t0 = time.perf_counter()
        hdf5.read_pair(path, int(index))
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", default="/tmp/dataset_pipeline_export_bench")
    parser.add_argument("--datumaro-python", default=None, help="python of a venv with datumaro installed")
    parser.add_argument("--threads", type=int, default=0, help="export threads for ours (0 = one per core)")
    parser.add_argument("--child", choices=["ours"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = Path(args.work)
    if args.child == "ours":
        print(json.dumps(run_ours(work, args.threads)))
        return
    t0 = time.perf_counter()
    prepare(work, args.images)
    print(f"prepared {args.images} images in {time.perf_counter() - t0:.1f} s", flush=True)
    # Timed first: after the exports below (gigabytes written, then deleted) the same reads took
    # 5-8 ms, the file pushed out of the page cache and the disk busy.
    os.sync()
    hdf5_read_ms = hdf5_access(work)
    results: dict[str, list[dict]] = {"ours": [], "datumaro": []}
    for repeat in range(args.repeats):
        os.sync()  # each side starts on a quiet disk (deleting thousands of files leaves work behind)
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--work",
                str(work),
                "--child",
                "ours",
                "--threads",
                str(args.threads),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        results["ours"].append(json.loads(out.stdout.strip().splitlines()[-1]))
        assert not results["ours"][-1]["reused"], "a release was left from an earlier run: nothing was timed"
        if args.datumaro_python:
            target = work / f"datumaro-{repeat}"
            shutil.rmtree(target, ignore_errors=True)
            os.sync()
            out = subprocess.run(
                [
                    args.datumaro_python,
                    "-c",
                    DATUMARO_CHILD,
                    _source_path(work),
                    str(target),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            results["datumaro"].append(json.loads(out.stdout.strip().splitlines()[-1]))
            shutil.rmtree(target, ignore_errors=True)
        print(f"repeat {repeat}: " + json.dumps({k: v[-1] for k, v in results.items() if v}), flush=True)
    summary = {
        name: {
            "seconds": round(statistics.median(r["seconds"] for r in runs), 2),
            "peak_rss_mib": round(statistics.median(r["peak_rss_mib"] for r in runs), 1),
        }
        for name, runs in results.items()
        if runs
    }
    if "datumaro" in summary:
        summary["speedup"] = round(summary["datumaro"]["seconds"] / summary["ours"]["seconds"], 2)
        summary["memory_ratio"] = round(
            summary["datumaro"]["peak_rss_mib"] / summary["ours"]["peak_rss_mib"], 2
        )
    summary["hdf5_pair_read_ms"] = round(hdf5_read_ms, 2)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

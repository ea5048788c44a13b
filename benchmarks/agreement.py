"""Agreement report speed: RLE-space metrics (this project) against a dense NumPy version.

A synthetic gold corpus: ``--images`` images of 640x480, 6 instances each (random convex
polygons of 6 classes, 800-20,000 px), labelled by 3 annotators whose outlines differ by up
to 2 px at every vertex. The corpus is built before timing.

Timed, in this process, on the same corpus:
* ``rle``: ``dataset_pipeline.agreement_report.compute_agreement`` without Boundary IoU
  (per-class pairwise IoU and IoU against the majority consensus, in RLE space);
* ``dense``: the same two metrics from decoded masks with NumPy, image by image;
* ``boundary``: the whole report with Boundary IoU, on ``--boundary-images`` images;
* Boundary IoU alone, two ways on the same class masks (each gold image's per-class union of
  each annotator's instances, built before timing): ``pairwise``, the report's implementation
  until issue 22 (``boundary_iou`` for every pair: both masks decoded at full frame and eroded),
  against ``batched`` (``boundary_iou_matrices`` over chunks of images, what the report runs
  now); the script checks that they give the same values to 1e-6.
Peak RSS of each is measured in a child process running only that part.

    .venv/bin/python benchmarks/agreement.py --images 10000
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dataset_pipeline.agreement_report import (  # noqa: E402
    BOUNDARY_CHUNK_GROUPS,
    AgreementSettings,
    boundary_iou,
    boundary_iou_matrices,
    compute_agreement,
)
from dataset_pipeline.taxonomy import load_taxonomy  # noqa: E402

H, W = 480, 640
ANNOTATORS = ("a", "b", "c")


def corpus(n_images: int, seed: int = 0) -> pd.DataFrame:
    """The synthetic gold corpus as an annotations table (RLE from polygons: no dense masks)."""
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(seed)
    rows = []
    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    for image in range(n_images):
        image_id = f"bench/img{image:06d}"
        for instance in range(6):
            cx, cy = rng.uniform(60, W - 60), rng.uniform(60, H - 60)
            radius = rng.uniform(16, 80) * rng.uniform(0.8, 1.2, angles.size)
            outline = np.c_[cx + radius * np.cos(angles), cy + radius * np.sin(angles)]
            for annotator in ANNOTATORS:
                jittered = np.clip(outline + rng.uniform(-2, 2, outline.shape), 0, [W - 1, H - 1])
                encoded = mask_utils.frPyObjects([jittered.ravel().tolist()], H, W)[0]
                rows.append(
                    {
                        "annotation_id": f"{image_id}#{annotator}#{instance}",
                        "image_id": image_id,
                        "annotator_id": annotator,
                        "class_id": 1 + instance % 6,
                        "height": H,
                        "width": W,
                        "rle": encoded["counts"].decode(),
                        "z_order": instance,
                        "seconds_spent": 10.0,
                        "premask_id": None,
                        "premask_iou": np.nan,
                        "review_accepted": pd.NA,
                    }
                )
    return pd.DataFrame(rows)


def dense_agreement(annotations: pd.DataFrame) -> dict[int, float]:
    """The straightforward version: decode every mask, NumPy set operations per image."""
    from pycocotools import mask as mask_utils

    pair_ious: dict[int, list[float]] = {}
    consensus_ious: dict[int, list[float]] = {}
    for _, rows in annotations.groupby("image_id", sort=False):
        annotators = sorted(rows.annotator_id.unique())
        by_class: dict[int, dict[str, np.ndarray]] = {}
        for row in rows.itertuples():
            mask = mask_utils.decode({"size": [row.height, row.width], "counts": row.rle.encode()}).astype(
                bool
            )
            slot = by_class.setdefault(int(row.class_id), {})
            slot[row.annotator_id] = slot[row.annotator_id] | mask if row.annotator_id in slot else mask
        for class_id, masks in by_class.items():
            empty = np.zeros((H, W), bool)
            for a, b in itertools.combinations(annotators, 2):
                ma, mb = masks.get(a, empty), masks.get(b, empty)
                union = np.count_nonzero(ma | mb)
                if union:
                    pair_ious.setdefault(class_id, []).append(np.count_nonzero(ma & mb) / union)
            votes = sum(masks.get(a, empty).astype(np.uint8) for a in annotators)
            consensus = votes > len(annotators) // 2
            for a in annotators:
                union = np.count_nonzero(masks.get(a, empty) | consensus)
                if union:
                    consensus_ious.setdefault(class_id, []).append(
                        np.count_nonzero(masks.get(a, empty) & consensus) / union
                    )
    return {c: float(np.mean(v)) for c, v in pair_ious.items()}


def class_masks(annotations: pd.DataFrame) -> list[list[dict]]:
    """Per gold image and class: each annotator's union of instances (RLE), as the report builds them."""
    from pycocotools import mask as mask_utils

    groups = []
    for (_, _), rows in annotations.groupby(["image_id", "class_id"], sort=False):
        per_annotator = []
        for _, mine in rows.groupby("annotator_id", sort=True):
            rles = [{"size": [H, W], "counts": r.encode()} for r in mine.rle]
            per_annotator.append(rles[0] if len(rles) == 1 else mask_utils.merge(rles, intersect=False))
        if len(per_annotator) >= 2:
            groups.append(per_annotator)
    return groups


def boundary_comparison(annotations: pd.DataFrame, repeats: int = 3) -> dict:
    """Boundary IoU of every pair: pairwise (the former implementation) against batched, same pass."""
    groups = class_masks(annotations)
    d = AgreementSettings().band(H, W)
    images = annotations.image_id.nunique()

    def pairwise() -> list[float]:
        return [
            value
            for group in groups
            for i, j in itertools.combinations(range(len(group)), 2)
            if (value := boundary_iou(group[i], group[j], d)) is not None
        ]

    def batched() -> list[float]:
        values = []
        for start in range(0, len(groups), BOUNDARY_CHUNK_GROUPS):
            for matrix in boundary_iou_matrices(groups[start : start + BOUNDARY_CHUNK_GROUPS], d):
                values += [float(matrix[i, j]) for i, j in itertools.combinations(range(len(matrix)), 2)]
        return values

    timings: dict[str, list[float]] = {"pairwise": [], "batched": []}
    results = {}
    for _ in range(repeats):  # interleaved, so that a slow minute of the machine hits both
        for name, function in (("pairwise", pairwise), ("batched", batched)):
            started = time.perf_counter()
            results[name] = function()
            timings[name].append(time.perf_counter() - started)
    difference = float(np.max(np.abs(np.array(results["pairwise"]) - np.array(results["batched"]))))
    assert difference <= 1e-6, f"the two Boundary IoU implementations differ by {difference}"
    pairwise_s, batched_s = (float(np.median(timings[k])) for k in ("pairwise", "batched"))
    return {
        "boundary_images": images,
        "pairs": len(results["batched"]),
        "pairwise_ms_per_image": round(1000 * pairwise_s / images, 3),
        "batched_ms_per_image": round(1000 * batched_s / images, 3),
        "speedup": round(pairwise_s / batched_s, 1),
        "max_difference": difference,
        "repeats": repeats,
    }


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_part(part: str, images: int, boundary_images: int) -> dict:
    table = corpus(images if part != "boundary" else boundary_images)
    taxonomy = load_taxonomy()
    before = peak_rss_mib()
    started = time.perf_counter()
    if part == "rle":
        report = compute_agreement(table, taxonomy, AgreementSettings(boundary=False))
        result = dict(zip(report.per_class.class_id, report.per_class.mean_pairwise_iou, strict=True))
    elif part == "dense":
        result = dense_agreement(table)
    else:
        report = compute_agreement(table, taxonomy, AgreementSettings(boundary=True))
        result = dict(zip(report.per_class.class_id, report.per_class.boundary_iou, strict=True))
    seconds = time.perf_counter() - started
    return {
        "part": part,
        "images": table.image_id.nunique(),
        "masks": len(table),
        "seconds": round(seconds, 2),
        "masks_per_s": round(len(table) / seconds, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),  # the whole child: imports, corpus and the part
        "rss_before_part_mib": round(before, 1),
        "per_class": {int(k): round(float(v), 4) for k, v in result.items() if v == v},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument(
        "--dense-images", type=int, default=None, help="images for the dense run (default: --images)"
    )
    parser.add_argument("--boundary-images", type=int, default=1_000)
    parser.add_argument(
        "--part", choices=["rle", "dense", "boundary"], default=None, help="run one part (child process)"
    )
    args = parser.parse_args()
    if args.part:
        images = args.dense_images or args.images if args.part == "dense" else args.images
        print(json.dumps(run_part(args.part, images, args.boundary_images)))
        return

    # Same process, same corpus: timing of both implementations.
    table = corpus(args.images)
    dense_table = (
        table
        if not args.dense_images
        else table[table.image_id.isin(table.image_id.unique()[: args.dense_images])]
    )
    taxonomy = load_taxonomy()
    started = time.perf_counter()
    report = compute_agreement(table, taxonomy, AgreementSettings(boundary=False))
    rle_seconds = time.perf_counter() - started
    started = time.perf_counter()
    dense = dense_agreement(dense_table)
    dense_seconds = time.perf_counter() - started
    dense_scaled = dense_seconds * table.image_id.nunique() / dense_table.image_id.nunique()
    rle_ious = dict(zip(report.per_class.class_id, report.per_class.mean_pairwise_iou, strict=True))
    if dense_table is table:
        assert all(abs(rle_ious[c] - v) < 1e-3 for c, v in dense.items()), "the two versions disagree"
    summary = {
        "images": table.image_id.nunique(),
        "masks": len(table),
        "rle_seconds": round(rle_seconds, 2),
        "dense_seconds": round(dense_seconds, 2),
        "dense_images": dense_table.image_id.nunique(),
        "speedup": round(dense_scaled / rle_seconds, 1),
    }
    print(json.dumps(summary))
    boundary_table = table[table.image_id.isin(table.image_id.unique()[: args.boundary_images])]
    print(json.dumps(boundary_comparison(boundary_table)))
    # Peak memory: each part alone in a child process.
    for part in ("rle", "dense", "boundary"):
        command = [
            sys.executable,
            __file__,
            "--part",
            part,
            "--images",
            str(args.images),
            "--boundary-images",
            str(args.boundary_images),
        ]
        if args.dense_images:
            command += ["--dense-images", str(args.dense_images)]
        out = subprocess.run(command, capture_output=True, text=True, check=True)
        print(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()

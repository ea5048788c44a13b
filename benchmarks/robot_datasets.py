"""Robot datasets in and out: ingest frames/s, write-back seconds and peak RSS, size added per frame.

Data, prepared once into ``--work`` (kept between runs):

* a LeRobot v3.0 dataset written by lerobot 0.4.4's recorder (``LeRobotDataset.create`` /
  ``add_frame`` / ``save_episode``): ``--frames`` demo frames at 640x480, 30 fps, AV1 (libsvtav1,
  lerobot's default), in episodes of 250, synthetic joint states and actions;
* an RLDS dataset of the same size written by a TFDS builder (``tests/robot_datasets/make_rlds.py``:
  a PNG ``image`` and a JPEG ``wrist_image`` per step);
* the demo frames' exact class maps as an annotations table (every frame labelled).

Timed, each in its own child process under GNU time (wall seconds from before the child's imports;
peak RSS = the largest of the child and the workers it runs), ``--repeats`` times, medians:

* ``ingest lerobot`` / ``ingest rlds``: :func:`dataset_pipeline.robot_datasets.ingest_dataset` of
  every frame of one camera (decode, lossless PNG, store write, manifest);
* ``write-back ours``: what ``dataset-pipeline write-back`` does - class maps painted from the
  annotations' RLE (:func:`formats.write_back.core.episode_masks`), then
  :func:`formats.write_back.core.write_back` (lerobot's ``add_features`` in ``.lerobot-venv``, with
  the mask-source flag and the legend);
* ``write-back add_features``: the named peer - lerobot's own ``add_features`` called directly in
  its venv with the same class maps held in memory as one array (no flag, no legend), same session;
* ``write-back rlds``: the RLDS copy through tensorflow-datasets (no peer: tfds has no add-feature
  tool; rewriting the dataset is what one does).

Size added per frame = (the written copy's bytes - the source's) / frames.

    .venv/bin/python benchmarks/robot_datasets.py --frames 1000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

EPISODE_FRAMES = 250

PEER = r"""
import json, sys, time
from pathlib import Path
import numpy as np
from lerobot.datasets.dataset_tools import add_features
from lerobot.datasets.lerobot_dataset import LeRobotDataset
root, masks_dir, out = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
dataset = LeRobotDataset("bench/robot", root=root, video_backend="pyav")
arrays = [np.load(masks_dir / f"episode_{e}_observation.images.front.npz")["masks"]
          for e in range(dataset.meta.total_episodes)]
maps = np.concatenate(arrays)
offsets = np.cumsum([0] + [len(a) for a in arrays])
feature = (lambda row, episode, frame: maps[offsets[int(episode)] + int(frame)],
           {"dtype": "uint8", "shape": tuple(maps.shape[1:]), "names": ["height", "width"]})
add_features(dataset, {"observation.segmentation": feature}, output_dir=out, repo_id="bench/robot")
"""


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one child process, GNU time's figures."""
    subprocess.run(["sync"], check=True)
    completed = subprocess.run(
        ["/usr/bin/time", "-f", "TIMED %e %M", *command],
        capture_output=True, text=True, env={**os.environ, **(env or {})},
    )  # fmt: skip
    if completed.returncode != 0:
        raise SystemExit(f"{command[:3]} failed:\n{completed.stderr[-3000:]}")
    line = [x for x in completed.stderr.splitlines() if x.startswith("TIMED ")][-1]
    _, seconds, kib = line.split()
    return float(seconds), int(kib) / 1024


def folder_bytes(path: Path, marks: tuple[str, ...]) -> int:
    """Bytes of the files whose name holds one of ``marks`` (".parquet", ".tfrecord-")."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and any(m in p.name for m in marks))


def prepare(work: Path, frames: int) -> dict:
    from dataset_pipeline.demo.robot import write_lerobot_dataset
    from dataset_pipeline.demo.scenes import render_episode
    from dataset_pipeline.demo.upload import plan_episodes, truth_rows_of
    from dataset_pipeline.formats.environments import python_of
    from dataset_pipeline.taxonomy import load_taxonomy

    marker = work / "prepared.json"
    if marker.exists():
        return json.loads(marker.read_text())
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    class_ids = {c.name: c.id for c in load_taxonomy().classes}
    rendered, tasks, truth = [], [], []
    for number, (scene, lighting, episode, n) in enumerate(plan_episodes(frames, EPISODE_FRAMES)):
        episode_frames = list(render_episode(scene, lighting, n, 11, episode))
        rendered.append([f.image for f in episode_frames])
        tasks.append(f"tidy the {episode_frames[0].scene_id} table")
        for f in episode_frames:
            image_id = f"bench/observation.images.front/episode_{number:06d}/frame_{f.frame_index:06d}"
            truth += truth_rows_of(image_id, image_id, f.instances, class_ids)
    import pandas as pd

    from dataset_pipeline import schemas

    rows = [
        {**t, "annotation_id": t["instance_id"], "annotator_id": "bench", "assistance": "manual",
         "review_status": "expert_approved", "created_at": pd.Timestamp("2026-12-01", tz="UTC")}
        for t in truth
    ]  # fmt: skip
    schemas.ANNOTATIONS.frame(rows).to_parquet(work / "annotations.parquet")
    write_lerobot_dataset(work / "lerobot", rendered, tasks, repo_id="bench/robot", fps=30)
    del rendered
    subprocess.run(
        [python_of("tfds"), str(ROOT / "tests/robot_datasets/make_rlds.py"), str(work / "rlds"),
         str(frames // EPISODE_FRAMES), str(EPISODE_FRAMES), "480", "640"],
        check=True, capture_output=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    info = {"frames": frames, "episodes": frames // EPISODE_FRAMES, "instances": len(truth)}
    marker.write_text(json.dumps(info))
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", default="/tmp/bench-robot")
    args = parser.parse_args()
    from dataset_pipeline.formats.environments import python_of

    work = Path(args.work)
    info = prepare(work, args.frames)
    python = sys.executable
    runs: dict[str, list[tuple[float, float]]] = {}
    sizes: dict[str, float] = {}
    for _repeat in range(args.repeats):
        for kind, folder, camera in (
            ("lerobot", "lerobot", "observation.images.front"),
            ("rlds", "rlds", "image"),
        ):
            store = work / f"store-{kind}"
            shutil.rmtree(store, ignore_errors=True)
            code = (
                "import sys, pathlib; sys.path.insert(0, sys.argv[1]);"
                "from dataset_pipeline.robot_datasets import IngestSettings, ingest_dataset;"
                "from dataset_pipeline.store import DatasetStore;"
                f"r = ingest_dataset(DatasetStore(sys.argv[2]), 'bench', IngestSettings(cameras=({camera!r},), every=1),"
                " root=pathlib.Path(sys.argv[3])); assert r.frames > 0, r"
            )
            runs.setdefault(f"ingest {kind}", []).append(
                timed([python, "-c", code, str(ROOT), str(store), str(work / folder)])
            )
        for name, out in (("write-back ours", work / "out-ours"), ("write-back rlds", work / "out-rlds")):
            shutil.rmtree(out, ignore_errors=True)
            source = work / ("lerobot" if name.endswith("ours") else "rlds")
            batch_code = (
                "import sys, pathlib, pandas as pd; sys.path.insert(0, sys.argv[1]);"
                "from dataset_pipeline import layout;"
                "from dataset_pipeline.formats.robot_sources import describe_upload;"
                "from dataset_pipeline.formats.write_back.core import episode_masks, write_back;"
                "root, out = pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3]);"
                "source = describe_upload(root); a = pd.read_parquet(sys.argv[4]);"
                "cam = source.cameras[0];"
                "a = a.assign(image_id=a.image_id.str.replace('observation.images.front', layout.camera_folder(cam)));"
                "ids = sorted(set(a.image_id)); parsed = [layout.parse_frame_image_id(i) for i in ids];"
                "lengths = {e.index: e.length for e in source.episodes};"
                "keep = [i for i, p in zip(ids, parsed) if p[2] in lengths and p[3] < lengths[p[2]]];"
                "a = a[a.image_id.isin(keep)];"
                "c = pd.DataFrame([{'image_id': i, 'camera_model': cam, 'source_episode': p[2], 'frame_index': p[3]}"
                " for i, p in zip(ids, parsed) if i in set(keep)]);"
                "m = episode_masks(source, c, a); write_back(root, source, m, out, batch='bench')"
            )
            runs.setdefault(name, []).append(
                timed(
                    [
                        python,
                        "-c",
                        batch_code,
                        str(ROOT),
                        str(source),
                        str(out),
                        str(work / "annotations.parquet"),
                    ]
                )
            )
        # the peer: lerobot's add_features, the same class maps in memory
        masks_dir = work / "masks"
        if not masks_dir.exists():
            subprocess.run(
                [python, "-c",
                 "import sys, pathlib, pandas as pd; sys.path.insert(0, sys.argv[1]);"
                 "from dataset_pipeline.formats.robot_sources import describe_upload;"
                 "from dataset_pipeline.formats.write_back.core import episode_masks;"
                 "import dataset_pipeline.layout as L; s = describe_upload(pathlib.Path(sys.argv[2]));"
                 "a = pd.read_parquet(sys.argv[3]); ids = sorted(set(a.image_id));"
                 "c = pd.DataFrame([{'image_id': i, 'camera_model': s.cameras[0], 'source_episode': L.parse_frame_image_id(i)[2],"
                 " 'frame_index': L.parse_frame_image_id(i)[3]} for i in ids]);"
                 "episode_masks(s, c, a).save(pathlib.Path(sys.argv[4]))",
                 str(ROOT), str(work / "lerobot"), str(work / "annotations.parquet"), str(masks_dir)],
                check=True,
            )  # fmt: skip
        peer_out = work / "out-peer"
        shutil.rmtree(peer_out, ignore_errors=True)
        runs.setdefault("write-back add_features", []).append(
            timed(
                [python_of("lerobot"), "-c", PEER, str(work / "lerobot"), str(masks_dir), str(peer_out)],
                env={"HF_HUB_OFFLINE": "1"},
            )  # fmt: skip
        )
    frames = info["frames"]
    sizes["lerobot"] = (
        folder_bytes(work / "out-ours", (".parquet",)) - folder_bytes(work / "lerobot", (".parquet",))
    ) / frames
    sizes["lerobot peer"] = (
        folder_bytes(peer_out, (".parquet",)) - folder_bytes(work / "lerobot", (".parquet",))
    ) / frames
    shards = (".tfrecord-",)
    sizes["rlds"] = (folder_bytes(work / "out-rlds", shards) - folder_bytes(work / "rlds", shards)) / frames
    report = {"frames": frames, "episodes": info["episodes"], "repeats": args.repeats, "cpus": os.cpu_count()}
    for name, values in runs.items():
        seconds = statistics.median(v[0] for v in values)
        report[name] = {
            "seconds": seconds,
            "frames_per_second": round(frames / seconds, 1),
            "seconds_per_1000_frames": round(seconds * 1000 / frames, 2),
            "peak_rss_mib": round(statistics.median(v[1] for v in values), 1),
            "all": values,
        }
    report["bytes_added_per_frame"] = {k: round(v) for k, v in sizes.items()}
    report["ratio add_features / ours (seconds)"] = round(
        report["write-back add_features"]["seconds"] / report["write-back ours"]["seconds"], 3
    )
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

"""The release: every exporter against its validator, holes, immutability, planted defects."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from dataset_pipeline import dataset_release as release
from dataset_pipeline import layout
from dataset_pipeline.demo import ground_truth_annotations
from dataset_pipeline.formats.hdf5 import exporter as hdf5
from dataset_pipeline.formats.release_content import ReleaseContent
from dataset_pipeline.formats.yolo_seg import exporter as yolo_seg
from dataset_pipeline.masks import decode_mask, encode_mask
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.taxonomy import load_taxonomy
from tests.conftest import demo_corpus

# rlds runs in the tensorflow-datasets environment: tests/robot_datasets/test_rlds.py exports and reads it.
FORMATS = [f for f in release.DEFAULT_FORMATS if f != "rlds"]


def make_content(store: DatasetStore, images, annotations, splits) -> ReleaseContent:
    return release.ReleaseContent(
        store, load_taxonomy(), images, annotations, splits, info={"description": "test"}
    )


def released_then_grown(store: DatasetStore, name: str, formats: list[str]):
    """Release 1 of 8 images (complete), then release 2 = release 1 + 4 new images, exported
    sharing release 1's unchanged files: (release 2's content, v1, v2, its export outcome)."""
    images_a, annotations_a, splits_a = demo_corpus(store, f"{name}-a", 8)
    first = make_content(store, images_a, annotations_a, splits_a)
    v1 = release.release_version(first, formats)
    release.write_exports(first, v1, formats)
    release.complete_release(store, v1, {}, "2026-12-01T00:00:00Z", first.images[["image_id", "split"]])
    images_b, annotations_b, splits_b = demo_corpus(store, f"{name}-b", 4)
    second = make_content(
        store,
        *(
            pd.concat(p, ignore_index=True)
            for p in ((images_a, images_b), (annotations_a, annotations_b), (splits_a, splits_b))
        ),
    )
    v2 = release.release_version(second, formats)
    grown = release.write_exports(second, v2, formats, reusable=release.reusable_release(store, v2))
    return second, v1, v2, grown


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[ReleaseContent, str]:
    store = DatasetStore(str(tmp_path_factory.mktemp("release") / "store"))
    content = make_content(store, *demo_corpus(store, "rel-b1", 24))
    version = release.release_version(content, FORMATS)
    release.write_exports(content, version, FORMATS)
    return content, version


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_exporter_reloads_equal_to_the_corpus(exported, fmt):
    content, version = exported
    assert release.validate_format(content, version, fmt) == []


def test_coco_instances_are_rle_strings_iscrowd_0_with_pixel_areas(exported):
    content, version = exported
    out = release.release_folder(content.store, version)
    document = json.loads(out.read_bytes("annotations/instances_train.json"))
    taxonomy = content.taxonomy
    assert [c["id"] for c in document["categories"]] == list(range(1, len(taxonomy.classes)))
    assert "background" not in {c["name"] for c in document["categories"]}
    assert {"info", "licenses", "images", "annotations"} <= set(document)
    assert document["annotations"], "the train split has instances"
    by_uid = content.annotations.set_index("annotation_id")
    for ann in document["annotations"]:
        assert ann["iscrowd"] == 0
        assert isinstance(ann["segmentation"]["counts"], str)
        source = by_uid.loc[ann["attributes"]["annotation_uid"]]
        assert ann["area"] == int(decode_mask(source.rle, source.height, source.width).sum())
    image = document["images"][0]
    assert {"id", "file_name", "width", "height"} <= set(image)
    assert out.exists(f"images/train/{image['file_name']}")


def _ring_content(store: DatasetStore) -> ReleaseContent:
    """One 64x80 image: a ring (class target_object, a hole inside) and a two-part container."""
    height, width = 64, 80
    rgb = np.full((height, width, 3), 90, np.uint8)
    ok, png = cv2.imencode(".png", rgb)
    store.write_bytes("tables/ring.png", png.tobytes())
    ring = np.zeros((height, width), bool)
    ring[8:40, 10:50] = True
    ring[16:30, 20:38] = False
    parts = np.zeros((height, width), bool)
    parts[45:60, 5:20] = True
    parts[45:60, 50:75] = True
    images = pd.DataFrame(
        [
            {
                "image_id": "b/ring",
                "uri": "tables/ring.png",
                "sha256": "x",
                "width": width,
                "height": height,
                "capture_ts": pd.Timestamp("2026-11-20T12:00:00Z"),
                "camera_model": "cam",
                "scene_id": "s",
                "lighting": "daylight",
                "episode_id": "e1",
                "frame_index": 0,
                "depth_uri": None,
                "batch": "b",
                "post_processing": None,
            }
        ]
    )
    taxonomy = load_taxonomy()
    annotations = ground_truth_annotations(
        pd.DataFrame(
            {
                "instance_id": ["ring", "parts"],
                "image_id": ["b/ring"] * 2,
                "class_id": [taxonomy.by_name("target_object").id, taxonomy.by_name("container").id],
                "rle": [encode_mask(ring), encode_mask(parts)],
                "height": [height] * 2,
                "width": [width] * 2,
                "z_order": [1, 0],
            }
        )
    )
    return release.ReleaseContent(
        store, taxonomy, images, annotations, images[["image_id"]].assign(split="train")
    )


def test_a_hole_survives_coco_and_png_exactly_and_yolo_above_095(local_store):
    content = _ring_content(local_store)
    version = release.release_version(content, FORMATS)
    release.write_exports(content, version, ["coco", "yolo_seg", "semantic_png"])
    for fmt in ("coco", "yolo_seg", "semantic_png"):
        assert release.validate_format(content, version, fmt) == [], fmt
    out = release.release_folder(local_store, version)
    rows = yolo_seg.parse_label_file(out.read_bytes("labels/train/b__ring.txt").decode(), "labels", 8)
    assert sorted(c for c, _ in rows) == [0, 2, 2]  # the ring in one row (hole bridged), the container in two
    ring = decode_mask(content.annotations.rle.iloc[0], 64, 80)
    # Rasterize as ultralytics does (cv2.fillPoly on pixel coordinates): the hole stays empty.
    drawn = np.zeros((64, 80), np.uint8)
    points = rows[0][1] * (80, 64)
    cv2.fillPoly(drawn, [np.round(points - 0.5).astype(np.int32)], 1)
    iou = (ring & drawn.astype(bool)).sum() / (ring | drawn.astype(bool)).sum()
    assert iou >= 0.9 and not drawn[20:26, 24:34].any()


def test_threads_write_the_same_files_as_one_thread(tmp_path):
    """The per-image pass on 4 threads writes byte-identical files, listed in the same order."""
    trees = []
    for threads in (1, 4):
        store = DatasetStore(str(tmp_path / f"t{threads}"))
        content = make_content(store, *demo_corpus(store, "rel-threads", 12))
        outcome = release.write_exports(content, "v", ["coco", "yolo_seg", "semantic_png"], threads=threads)
        trees.append((outcome.written, _release_files(store, "v")))
    (written_1, files_1), (written_4, files_4) = trees
    assert written_1 == written_4 and len(written_1["yolo_seg"]) == 13  # data.yaml + 12 label files
    assert files_1 == files_4


def _release_files(store: DatasetStore, version: str) -> dict[str, bytes]:
    folder = store.path(f"releases/{version}")
    return {
        os.path.relpath(os.path.join(d, f), folder): Path(d, f).read_bytes()
        for d, _, names in os.walk(folder)
        for f in names
    }


def test_arrow_tables_give_the_release_that_pandas_frames_give_without_loading_pandas(tmp_path):
    """Content built from Parquet read as Arrow (the lean export path) writes the same bytes as
    content built from DataFrames, and the per-image formats and COCO import neither pandas
    nor pyarrow.compute (the content joins the tables by row positions)."""
    import subprocess
    import sys

    store = DatasetStore(str(tmp_path / "store"))
    images, annotations, splits = demo_corpus(store, "rel-arrow", 10)
    # one image without a split: not released, its instances left out
    unreleased = splits.image_id.iloc[0]
    splits = splits.iloc[1:]
    # shuffled: the content finds each image's instances itself (each image's keep their order)
    shuffled = annotations.sample(frac=1.0, random_state=0).reset_index(drop=True)
    content = make_content(store, images, shuffled, splits)
    assert unreleased not in set(content.images.image_id) | set(content.annotations.image_id)
    expected = shuffled[shuffled.image_id != unreleased].sort_values("image_id", kind="stable")
    assert content.annotations.annotation_id.tolist() == expected.annotation_id.tolist()
    for name, frame in {"images": images, "annotations": shuffled, "splits": splits}.items():
        store.write_parquet(f"tables/arrow/{name}.parquet", frame)
    formats = ["coco", "yolo_seg", "semantic_png"]
    release.write_exports(content, "from-pandas", formats)
    script = f"""
import sys
from dataset_pipeline import dataset_release as release
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.taxonomy import load_taxonomy
store = DatasetStore({str(tmp_path / "store")!r})
tables = [store.read_table(f"tables/arrow/{{n}}.parquet") for n in ("images", "annotations", "splits")]
content = release.ReleaseContent(store, load_taxonomy(), *tables, info={{"description": "test"}})
release.write_exports(content, "from-arrow", {formats!r})
print("imported:", sorted({{"pandas", "pyarrow.compute"}} & set(sys.modules)))
"""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "imported: []"
    from_pandas, from_arrow = _release_files(store, "from-pandas"), _release_files(store, "from-arrow")
    assert (
        len(from_arrow) == 3 * 9 + 3 + 1 + 1 + 1
    )  # images, labels, masks; 3 COCO files, data.yaml, exports.json, index.parquet
    from_arrow.pop("exports.json"), from_pandas.pop("exports.json")  # names the version
    assert from_arrow == from_pandas


def test_second_run_gives_the_same_version_and_rewrites_nothing(local_store):
    images, annotations, splits = demo_corpus(local_store, "rel-imm", 8)
    content = make_content(local_store, images, annotations, splits)
    version = release.release_version(content, FORMATS)
    first = release.write_exports(content, version, FORMATS)
    folder = local_store.path(f"releases/{version}")
    stamps = {p: os.stat(os.path.join(d, p)).st_mtime_ns for d, _, files in os.walk(folder) for p in files}
    again = make_content(local_store, images, annotations, splits)
    assert release.release_version(again, FORMATS) == version
    second = release.write_exports(again, version, FORMATS)
    assert second.reused and not first.reused and second.written == first.written
    assert stamps == {
        p: os.stat(os.path.join(d, p)).st_mtime_ns for d, _, files in os.walk(folder) for p in files
    }
    changed = annotations.copy()
    changed.loc[0, "class_id"] = 3 if changed.class_id.iloc[0] != 3 else 4
    assert release.release_version(make_content(local_store, images, changed, splits), FORMATS) != version
    assert release.list_releases(local_store) == []  # exports alone do not make a complete release
    release.complete_release(
        local_store, version, {}, "2026-11-27T00:00:00Z", content.images[["image_id", "split"]]
    )
    assert release.list_releases(local_store) == [version]


def test_an_annotation_outside_the_taxonomy_fails_validation_with_its_name(local_store):
    images, annotations, splits = demo_corpus(local_store, "rel-bad", 8)
    planted = annotations.copy()
    top = int(planted.z_order.idxmax())  # drawn over everything else: its pixels show in the class map
    planted.loc[top, "class_id"] = 42
    bad_id = planted.annotation_id.iloc[top]
    content = make_content(local_store, images, planted, splits)
    problems = release.class_id_problems(content)
    assert len(problems) == 1 and bad_id in problems[0] and "class_id 42" in problems[0]
    version = release.release_version(content, FORMATS)
    release.write_exports(content, version, ["coco", "semantic_png"])
    assert any(
        "category_id 42" in p and bad_id in p for p in release.validate_format(content, version, "coco")
    )
    assert any("[42]" in p for p in release.validate_format(content, version, "semantic_png"))


def test_validators_catch_a_corrupted_file(exported, tmp_path):
    content, version = exported
    out = release.release_folder(content.store, version)
    row = next(content.iter_rows("train"))
    name = f"masks/train/{row.image_id.replace('/', '__')}.png"
    original = out.read_bytes(name)
    try:
        out.write_bytes(name, original[: len(original) // 2])
        problems = release.validate_format(content, version, "semantic_png")
        assert any(name in p for p in problems)
    finally:
        out.write_bytes(name, original)
    label = yolo_seg.label_file(row.split, row.image_id)
    text = out.read_bytes(label)
    try:
        out.write_text(label, "0 0.1 0.1 0.2 0.1 0.2 0.2\n")
        assert any(label in p for p in release.validate_format(content, version, "yolo_seg"))
        out.write_text(label, "0 0.1 0.1 nan 0.1 0.2 0.2\n")
        assert any("outside [0, 1]" in p for p in release.validate_format(content, version, "yolo_seg"))
    finally:
        out.write_bytes(label, text)
    assert release.validate_format(content, version, "yolo_seg") == []


def test_hdf5_random_access_returns_the_pair(exported):
    content, version = exported
    rows = list(content.iter_rows("val"))
    with release.release_folder(content.store, version).local_copy("hdf5/val.h5") as path:
        image_id, rgb, class_map = hdf5.read_pair(path, len(rows) - 1)
    assert image_id == rows[-1].image_id
    assert np.array_equal(rgb, content.rgb(rows[-1])) and np.array_equal(
        class_map, content.class_map(rows[-1])
    )


def test_lerobot_is_a_dataset_per_split_declaring_the_segmentation_feature(exported):
    content, version = exported
    out = release.release_folder(content.store, version)
    for split in content.splits:
        images = content.split_images(split)
        info = json.loads(out.read_bytes(f"lerobot/{split}/meta/info.json"))
        assert info["codebase_version"] == "v3.0" and info["video_path"] is None
        feature = info["features"]["observation.segmentation"]
        assert feature["dtype"] == "uint8" and feature["shape"] == [
            int(images.height.iloc[0]),
            int(images.width.iloc[0]),
        ]
        assert info["splits"] == {split: f"0:{images.episode_id.nunique()}"}
        assert info["total_frames"] == len(images) and info["total_episodes"] == images.episode_id.nunique()
        frames = out.store.read_parquet(out.key(f"lerobot/{split}/meta/frames.parquet"))
        assert frames["index"].tolist() == list(range(len(images))) and set(frames.split) == {split}


def test_an_incremental_release_links_every_unchanged_file_and_both_read_back_whole(local_store):
    """Release 1 holds batch A; release 2 adds batch B (named to sort first) and relabels one image of A. Every file of
    A's other images, A's HDF5 shards and A's unchanged episodes are hard links to release 1's (one
    inode, no bytes written); B's files and the relabelled image's are new; both releases read
    back equal to their corpus with every format's reader, and release 1's checksums still hold."""
    images_a, annotations_a, splits_a = demo_corpus(local_store, "inc-a", 12)
    first = make_content(local_store, images_a, annotations_a, splits_a)
    v1 = release.release_version(first, FORMATS)
    made = release.write_exports(first, v1, FORMATS)
    assert made.files_linked == 0 and made.bytes_written > 0
    manifest_1 = release.complete_release(
        local_store, v1, {}, "2026-12-01T00:00:00Z", first.images[["image_id", "split"]]
    )

    images_b, annotations_b, splits_b = demo_corpus(local_store, "inc-0", 4)  # its episodes sort first
    relabelled = annotations_a.copy()
    target = relabelled.image_id.iloc[0]
    first_row = relabelled.index[relabelled.image_id == target][0]
    relabelled.loc[first_row, "class_id"] = 3 if relabelled.loc[first_row, "class_id"] != 3 else 4
    second = make_content(
        local_store,
        pd.concat([images_a, images_b], ignore_index=True),
        pd.concat([relabelled, annotations_b], ignore_index=True),
        pd.concat([splits_a, splits_b], ignore_index=True),
    )
    v2 = release.release_version(second, FORMATS)
    reusable = release.reusable_release(local_store, v2)
    assert reusable is not None
    grown = release.write_exports(second, v2, FORMATS, reusable=reusable)
    assert grown.reused_from == f"releases/{v1}" and grown.files_linked > 0

    index = local_store.read_parquet(f"releases/{v2}/index.parquet")
    per_image = index[index.unit.isin(set(images_a.image_id) | set(images_b.image_id))]
    for row in per_image.itertuples():
        new = os.stat(local_store.path(f"releases/{v2}/{row.file}"))
        unchanged = row.unit.startswith("inc-a/") and row.unit != target
        assert row.reused == unchanged, row
        if unchanged:
            assert new.st_ino == os.stat(local_store.path(f"releases/{v1}/{row.file}")).st_ino
    shards = index[index.format.eq("hdf5") & index.unit.str.startswith("shard:")]
    assert set(shards.unit.str.split("/").str[1].str.rsplit("-", n=1).str[0]) == {"inc-a", "inc-0"}
    touched = {s for s in second.splits if target in {r.image_id for r in second.iter_rows(s)}}
    for row in shards.itertuples():  # A's shards are reused except the one holding the relabelled image
        split = row.unit.split(":")[1].split("/")[0]
        assert row.reused == ("/inc-a-" in row.unit and split not in touched), row
    episodes = index[index.format == "episode_hdf5"]
    assert episodes.reused.any() and not episodes[episodes.unit.str.contains("inc-0")].reused.any()
    assert grown.bytes_written < made.bytes_written  # 4 new images and one relabelled of 16
    # LeRobot, a dataset per split: release 1's episodes keep their numbers, rows and data files,
    # B's are appended in files of their own; a data file is linked unless it holds a changed frame
    target_episode = images_a.set_index("image_id").episode_id[target]
    data_files = index[index.format.eq("lerobot") & index.unit.str.startswith("data:")]
    kept = ["episode_id", "episode_index", "dataset_from_index", "dataset_to_index", "data/file_index"]
    episodes_file = "meta/episodes/chunk-000/file-000.parquet"
    for split in second.splits:
        before = local_store.read_parquet(f"releases/{v1}/lerobot/{split}/{episodes_file}")
        after = local_store.read_parquet(f"releases/{v2}/lerobot/{split}/{episodes_file}")
        assert after[kept].iloc[: len(before)].values.tolist() == before[kept].values.tolist()
        assert set(after.episode_id.iloc[len(before) :]) <= set(images_b.episode_id)
        for row in data_files[data_files.unit.str.startswith(f"data:{split}/")].itertuples():
            held = set(after[after["data/file_index"] == int(row.unit.rsplit("/", 1)[1])].episode_id)
            assert row.reused == (held <= set(before.episode_id) and target_episode not in held), row
    assert data_files.reused.any() and not data_files.reused.all()

    for fmt in FORMATS:
        assert release.validate_format(second, v2, fmt) == [], fmt
        assert release.validate_format(first, v1, fmt) == [], fmt
    assert release.file_digests(release.release_folder(local_store, v1)) == manifest_1["files"]
    # release 2's manifest takes the linked files' checksums from release 1's: they are right
    manifest_2 = release.complete_release(
        local_store, v2, {}, "2026-12-02T00:00:00Z", second.images[["image_id", "split"]]
    )
    assert len(release.linked_digests(release.release_folder(local_store, v2))) == grown.files_linked
    for relative, entry in manifest_2["files"].items():
        data = Path(local_store.path(f"releases/{v2}/{relative}")).read_bytes()
        assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}, relative
    assert release.list_releases(local_store) == [v1, v2]
    # a file of a complete release cannot be changed in place through either name
    linked = per_image[per_image.reused].file.iloc[0]
    assert os.stat(local_store.path(f"releases/{v1}/{linked}")).st_mode & 0o222 == 0


def test_an_incremental_release_checks_read_back_what_it_made_not_what_it_shares(local_store):
    """Release 2 adds a batch to release 1 (complete). Its PNG, YOLO and episode HDF5 checks read
    the new batch's files and leave out the ones linked from release 1 (read back by release 1's
    checks, read-only), saying how many; a new file that is wrong still fails; a shared file gone
    from release 2 is found only when the shared files are read too (check_shared_files)."""
    formats = ["semantic_png", "yolo_seg", "episode_hdf5"]
    second, _, v2, _ = released_then_grown(local_store, "chk", formats)
    index = local_store.read_parquet(f"releases/{v2}/index.parquet")
    selected = {f"{fmt}_reloads" for fmt in formats}
    verdicts = dict(release.check_verdicts(second, v2, selected, read_shared=False))
    for fmt in formats:
        verdict = verdicts[f"{fmt}_reloads"]
        linked = int((index.reused & index.format.eq(fmt)).sum())
        assert verdict.passed and linked > 0, (fmt, verdict.summary)
        assert verdict.figures["shared_unread"] == linked and f"{linked} files shared" in verdict.summary

    out = release.release_folder(local_store, v2)
    made = index[~index.reused & index.format.eq("semantic_png")].file.iloc[0]
    assert made.startswith("masks/") and "chk-b" in made
    original = out.read_bytes(made)
    out.write_bytes(made, original[: len(original) // 2])
    assert any(made in p for p in release.validate_format(second, v2, "semantic_png", read_shared=False))
    out.write_bytes(made, original)

    shared = index[index.reused & index.format.eq("semantic_png")].file.iloc[0]
    os.unlink(local_store.path(f"releases/{v2}/{shared}"))  # release 1's file stays
    assert release.validate_format(second, v2, "semantic_png", read_shared=False) == []
    assert any(shared in p for p in release.validate_format(second, v2, "semantic_png"))


def test_shards_are_steps_of_their_own_and_the_release_waits_for_every_one(local_store):
    """What dataset_release's fan-out does: each shard exported on its own (in any order, by any
    worker), then the release assembled. A missing shard is named and stops the assembly; a shard
    already done is not made again; the assembled release equals the one-process release."""
    images, annotations, splits = demo_corpus(local_store, "shards-a", 12)
    more = demo_corpus(local_store, "shards-b", 6)
    content = make_content(
        local_store,
        *(
            pd.concat([a, b], ignore_index=True)
            for a, b in zip((images, annotations, splits), more, strict=True)
        ),
    )
    version = release.release_version(content, FORMATS)
    shards = release.release_shards(content)
    assert len(shards) == len({(s, n.rsplit("-", 1)[0]) for s, n in shards}) >= 4  # per split and batch
    for split, shard in reversed(shards[1:]):
        release.export_shard(content, version, FORMATS, split, shard)
    with pytest.raises(
        release.ReleaseError, match=f"shard {shards[0][0]}/{shards[0][1]} has not been exported"
    ):
        release.assemble_exports(content, version, FORMATS)
    done = local_store.path(f"releases/{version}/hdf5/shards/{shards[1][0]}/{shards[1][1]}.h5")
    stamp = os.stat(done).st_mtime_ns
    for split, shard in shards:  # the retry of the whole fan-out: only the missing shard is made
        release.export_shard(content, version, FORMATS, split, shard)
    assert os.stat(done).st_mtime_ns == stamp
    outcome = release.assemble_exports(content, version, FORMATS)
    assert {f: release.validate_format(content, version, f) for f in FORMATS} == {f: [] for f in FORMATS}
    index = local_store.read_parquet(f"releases/{version}/index.parquet")
    assert not index.file.duplicated().any()
    assert set(index.file) == set(release.release_folder(local_store, version).list()) - {
        "index.parquet",
        "exports.json",
    }
    one_process = release.write_exports(make_content(local_store, *more), "one-process", FORMATS)
    assert set(outcome.written) == set(one_process.written)


def test_shards_checked_beside_the_exports_are_added_up_by_their_runs_checks(local_store):
    """Each exported shard is checked on its own (YOLO, PNG, its HDF5 shard, pycocotools decoding
    its instances' RLE) and each format made in a step of its own once that step is done, the
    verdicts recorded for the run; the run's blocking checks add them up and read only what no
    step checked (data.yaml, the HDF5 split files' mapping, the COCO files). A file that is wrong
    when its shard is checked fails the release's check by name; another run checks for itself."""
    formats = ["coco", "yolo_seg", "semantic_png", "hdf5", "episode_hdf5"]
    content = make_content(
        local_store,
        *(
            pd.concat([a, b], ignore_index=True)
            for a, b in zip(
                demo_corpus(local_store, "beside-a", 12), demo_corpus(local_store, "beside-b", 6), strict=True
            )
        ),
    )
    version = release.release_version(content, formats)
    shards = release.release_shards(content)
    assert release.shard_checked_formats(formats) == ["coco", "yolo_seg", "semantic_png", "hdf5"]
    with pytest.raises(
        release.ReleaseError, match=f"shard {shards[0][0]}/{shards[0][1]} has not been exported"
    ):
        release.check_shard(content, version, formats, *shards[0], run="run-1")
    for split, shard in shards:
        release.export_shard(content, version, formats, split, shard)
    release.export_whole(content, version, formats, "episode_hdf5")

    out = release.release_folder(local_store, version)
    row = dict(content.shards(shards[0][0]))[shards[0][1]][0]
    broken = f"masks/{row.split}/{row.image_id.replace('/', '__')}.png"
    original = out.read_bytes(broken)
    out.write_bytes(broken, original[: len(original) // 2])
    for split, shard in shards:
        checked = release.check_shard(content, version, formats, split, shard, run="run-1")
        assert set(checked) == {"coco", "yolo_seg", "semantic_png", "hdf5"}
        assert local_store.exists(layout.release_check_part_key(version, "run-1", split, shard))
    out.write_bytes(broken, original)
    assert release.check_whole(content, version, formats, "episode_hdf5", run="run-1") == {
        "episode_hdf5": {"problems": [], "shared_unread": 0}
    }
    release.assemble_exports(content, version, formats)

    selected = {f"{fmt}_reloads" for fmt in formats}
    verdicts = dict(release.check_verdicts(content, version, selected, runs=["run-1"]))
    assert not verdicts["semantic_png_reloads"].passed and broken in verdicts["semantic_png_reloads"].summary
    for fmt in ("coco", "yolo_seg", "semantic_png", "hdf5"):
        assert verdicts[f"{fmt}_reloads"].figures["parts_checked_beside_exports"] == len(shards)
    assert verdicts["yolo_seg_reloads"].passed and verdicts["hdf5_reloads"].passed
    assert verdicts["episode_hdf5_reloads"].figures["parts_checked_beside_exports"] == 1
    assert verdicts["coco_reloads"].passed
    # another run (a rerun of the checks alone) reads every file itself: the PNG is whole again
    again = dict(release.check_verdicts(content, version, selected, runs=["run-2"]))
    assert all(v.passed for v in again.values()), {k: v.summary for k, v in again.items()}
    assert {v.figures["parts_checked_beside_exports"] for v in again.values()} == {0}


def test_the_hdf5_split_file_check_reads_its_mapping_of_the_shards_not_their_pixels(local_store):
    """The split file's check (its shards' checks read the pixels): a split file mapping the
    shards in another order, or over a shard gone, is named."""
    content = make_content(
        local_store,
        *(
            pd.concat([a, b], ignore_index=True)
            for a, b in zip(
                demo_corpus(local_store, "map-a", 8), demo_corpus(local_store, "map-b", 8), strict=True
            )
        ),
    )
    version = release.release_version(content, ["hdf5"])
    release.write_exports(content, version, ["hdf5"])
    out = release.release_folder(local_store, version)
    assert hdf5.validate_release(content, out) == []
    split = max(content.splits, key=lambda s: len(content.shards(s)))
    shards = content.shards(split)
    assert len(shards) >= 2
    path = local_store.path(out.key(hdf5.split_file(split)))
    size = (int(shards[0][1][0].height), int(shards[0][1][0].width))
    hdf5.write_split(content, split, list(reversed(shards)), path, size)
    problems = hdf5.validate_release(content, out)
    assert any(f"hdf5/{split}.h5: attribute shards differs" in p for p in problems), problems
    assert any(f"hdf5/{split}.h5: image_ids differ" in p for p in problems), problems
    assert any("not the shards' rows in order" in p for p in problems), problems
    hdf5.write_split(content, split, shards, path, size)
    os.unlink(local_store.path(out.key(hdf5.shard_file(split, shards[1][0]))))
    problems = hdf5.validate_release(content, out)
    assert problems == [
        f"hdf5/{split}.h5: shard files ['{hdf5.shard_file(split, shards[1][0])}'] are missing"
    ]


def test_an_incremental_release_checks_leave_out_shared_shards_and_data_files_and_decode_new_masks(
    local_store, monkeypatch
):
    """Release 2 adds a batch to release 1 (complete). Its HDF5 check leaves out the shards linked
    from release 1, LeRobot's the data files linked from it (the metadata is read whole), and
    COCO's decodes with pycocotools only the new images' masks: for the shared images' instances
    it compares the RLE string with the corpus's, so a changed one is still found."""
    import pycocotools.mask

    formats = ["coco", "hdf5", "lerobot"]
    second, _, v2, _ = released_then_grown(local_store, "inc", formats)
    index = local_store.read_parquet(f"releases/{v2}/index.parquet")
    decoded = []
    decode = pycocotools.mask.decode
    monkeypatch.setattr(pycocotools.mask, "decode", lambda rle: decoded.append(rle["counts"]) or decode(rle))
    selected = {f"{fmt}_reloads" for fmt in formats}
    verdicts = dict(release.check_verdicts(second, v2, selected, read_shared=False))
    assert all(v.passed for v in verdicts.values()), {k: v.summary for k, v in verdicts.items()}
    for fmt in ("hdf5", "lerobot"):
        linked = int((index.reused & index.format.eq(fmt)).sum())
        assert linked > 0 and verdicts[f"{fmt}_reloads"].figures["shared_unread"] == linked, fmt
    new_images = set(second.images.image_id[second.images.image_id.str.startswith("inc-b")])
    new_instances = int(second.annotations.image_id.isin(new_images).sum())
    assert 0 < len(decoded) == new_instances < len(second.annotations)
    decoded.clear()
    assert release.validate_format(second, v2, "coco") == [] and len(decoded) == len(second.annotations)

    out = release.release_folder(local_store, v2)
    split = second.images.split[~second.images.image_id.isin(new_images)].iloc[0]
    name = f"annotations/instances_{split}.json"
    original = out.read_bytes(name)
    document = json.loads(original)
    shared_ids = {image["id"] for image in document["images"] if image["image_uid"].startswith("inc-a")}
    changed = next(a for a in document["annotations"] if a["image_id"] in shared_ids)
    changed["segmentation"]["counts"] = document["annotations"][-1]["segmentation"]["counts"] + "0"
    os.chmod(local_store.path(out.key(name)), 0o644)
    out.write_bytes(name, json.dumps(document).encode())
    problems = release.validate_format(second, v2, "coco", read_shared=False)
    assert any(f"annotation {changed['id']}" in p and "not the corpus instance's RLE" in p for p in problems)

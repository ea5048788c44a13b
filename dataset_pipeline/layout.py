"""Where everything lives in the dataset store: the one home of every key and prefix.

A key is a relative POSIX path below the store's root (a folder or ``s3://bucket/prefix``).
Every stage, the sensors and the CLI take their keys from here, as lerobot keeps its on-disk
path templates in one place, so the layout can be read (and changed) in one file:

======================================================  ===================================================
key                                                     written by
======================================================  ===================================================
``incoming/<batch>/manifest.csv``, images, ...          the robot's upload (raw, create-only, manifest last)
``incoming/<batch>/prompts.csv``                        the upload's detector prompts (optional)
``incoming/<batch>/<a robot dataset>``, ``UPLOAD_COMPLETE``  a robot dataset's upload (marker last)
``frames/<batch>/manifest.csv``, ``source.json``, PNGs  its sampled frames (raw_captures / ``ingest``)
``ground_truth/<batch>/instances.parquet``              the demo renderer (exact instance masks)
``tables/captures/<batch>.parquet``                     raw_captures (and ``tables/quarantine/``)
``tables/premasks/<batch>.parquet``                     sam2_premasks
``tasks/<batch>/label_studio/...``, ``.../cvat/...``    annotation_tasks
``tables/label_studio/<batch>.parquet``                 annotation_tasks (task ids in a live Label Studio)
``reviews/<batch>/...``                                 the annotation tools' exports (raw, create-only)
``tables/annotations/<batch>.parquet``                  reviewed_annotations
``guidelines/revisions.json``, ``guidelines/r<NNN>/...``  annotation_guideline (every revision kept)
``tables/qc/<batch>.parquet``, ``tasks/<batch>/qc/...``  qc_assignments (peer-review and audit samples)
``tables/corpus/{annotations,images}.parquet``          annotation_corpus
``tables/quality/...``                                  quality_report
``tables/agreement/<table>.parquet``                    agreement_report
``tables/splits/{splits.parquet,info.json}``            dataset_splits
``models/baseline/<run>/...``, ``models/baseline/latest.json``  baseline_model
``tables/zero_shot/summary.json``                       zero_shot_comparison
``tables/active_learning/queue.parquet``                active_learning_queue
``releases/<version>/...``, ``releases/latest.json``    dataset_release, dataset_card
``previews/<stage>/...``                                every stage's full-size pictures
======================================================  ===================================================

Inside a release folder the paths shared by every format (``images/``, the manifests, the
card's files) are here too; each format's own files below it (COCO's ``annotations/``,
YOLO's ``labels/``, LeRobot's ``meta/``...) follow that format's convention and are named
in its folder of :mod:`dataset_pipeline.formats`.

The key grammar is here as well: :func:`normalize_key` refuses ``..``, absolute paths,
URLs and backslashes, so no input can name a key outside the store.
"""

from __future__ import annotations

import posixpath
import re


class StoreKeyError(ValueError):
    """A key would escape the store root or is not a plain relative path."""


def normalize_key(key: str) -> str:
    """Validate a store key and return it in canonical form.

    >>> normalize_key("tables/captures/b1.parquet")
    'tables/captures/b1.parquet'
    >>> normalize_key("../etc/passwd")
    Traceback (most recent call last):
    ...
    dataset_pipeline.layout.StoreKeyError: key '../etc/passwd' escapes the store root ('..' segment)
    """
    if not isinstance(key, str) or not key.strip():
        raise StoreKeyError(f"key {key!r} is empty")
    if "\\" in key or "\x00" in key:
        raise StoreKeyError(f"key {key!r} contains a backslash or NUL byte")
    if "://" in key or key.startswith(("/", "~")) or (len(key) > 1 and key[1] == ":"):
        raise StoreKeyError(f"key {key!r} is absolute; keys are relative to the store root")
    parts = key.split("/")
    if ".." in parts:
        raise StoreKeyError(f"key {key!r} escapes the store root ('..' segment)")
    normalized = posixpath.normpath(key)
    if normalized in (".", ""):
        raise StoreKeyError(f"key {key!r} names the store root itself")
    return normalized


def join_key(*parts: str) -> str:
    """Join key segments and validate the result (a segment may not contain ``..``).

    >>> join_key("incoming", "b1", "images/a.jpg")
    'incoming/b1/images/a.jpg'
    """
    return normalize_key("/".join(p.strip("/") for p in parts if p))


_BATCH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_batch_name(batch: str) -> str:
    """Return ``batch`` if it is usable as a partition key and a folder name, else raise ValueError.

    >>> check_batch_name("2026-11-24-kitchen-b")
    '2026-11-24-kitchen-b'
    """
    if not is_batch_name(batch):
        raise ValueError(
            f"batch name {batch!r} is not allowed: use letters, digits, '.', '_' and '-' "
            "(at most 128, not starting with a separator)"
        )
    return batch


def is_batch_name(name: object) -> bool:
    return isinstance(name, str) and bool(_BATCH_NAME.match(name)) and ".." not in name


# -- raw inputs: create-only folders ----------------------------------------------------------

UPLOADS = "incoming"
REVIEWS = "reviews"
#: Folders of files that arrive from outside (uploads, the annotation tools' exports): the store
#: only creates files there, never replaces or deletes one.
RAW_PREFIXES: tuple[str, ...] = (f"{UPLOADS}/", f"{REVIEWS}/")

MANIFEST_FILE = "manifest.csv"
PROMPTS_FILE = "prompts.csv"
PEER_REVIEW_FILE = "peer_review.csv"
#: Snapshots pulled from a live Label Studio land in ``reviews/<batch>/label_studio_api/``.
LABEL_STUDIO_PULLS = "label_studio_api"


def upload_prefix(batch: str) -> str:
    """``incoming/<batch>``: a batch's raw upload."""
    return join_key(UPLOADS, check_batch_name(batch))


def upload_file(batch: str, relative: str) -> str:
    """A file of a batch's upload, by its path inside the batch folder (as the manifest names it)."""
    return join_key(upload_prefix(batch), relative)


def upload_relative(batch: str, key: str) -> str:
    """The path inside the batch folder of an upload key (inverse of :func:`upload_file`), or of a
    robot dataset's sampled frame (under ``frames/<batch>/``): what manifests, prompts and the
    annotation tools name an image by.

    >>> upload_relative("b1", "incoming/b1/images/a.jpg")
    'images/a.jpg'
    >>> upload_relative("b1", "frames/b1/top/episode_000000/frame_000004.png")
    'top/episode_000000/frame_000004.png'
    """
    for prefix in (upload_prefix(batch) + "/", f"{FRAMES}/{check_batch_name(batch)}/"):
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def manifest_key(batch: str) -> str:
    return upload_file(batch, MANIFEST_FILE)


def prompts_key(batch: str) -> str:
    return upload_file(batch, PROMPTS_FILE)


#: Glob of every batch's manifest: a batch is complete once its manifest exists.
MANIFESTS_GLOB = f"{UPLOADS}/*/{MANIFEST_FILE}"

#: A robot dataset's upload (LeRobot, RLDS, episode HDF5 at the batch folder's root) is complete
#: once this marker exists: sync tools copy files in any order, so no file of the dataset's own
#: can say it is the last. It may hold the ingest settings as JSON (cameras, every, fps).
UPLOAD_COMPLETE_FILE = "UPLOAD_COMPLETE"
DATASET_MARKERS_GLOB = f"{UPLOADS}/*/{UPLOAD_COMPLETE_FILE}"
#: A robot dataset's sampled frames, their manifest and the dataset's provenance (derived: the
#: upload itself stays as the robot wrote it, for write-back).
FRAMES = "frames"
SOURCE_FILE = "source.json"


def upload_complete_key(batch: str) -> str:
    return upload_file(batch, UPLOAD_COMPLETE_FILE)


def frames_prefix(batch: str) -> str:
    """``frames/<batch>``: where a robot dataset's sampled frames and their manifest live."""
    return join_key(FRAMES, check_batch_name(batch))


def frames_manifest_key(batch: str) -> str:
    return join_key(frames_prefix(batch), MANIFEST_FILE)


def frames_source_key(batch: str) -> str:
    return join_key(frames_prefix(batch), SOURCE_FILE)


def frame_image_file(camera: str, episode_index: int, frame_index: int) -> str:
    """A sampled frame's file inside ``frames/<batch>/`` (as its manifest names it).

    >>> frame_image_file("observation.images.top", 3, 120)
    'observation.images.top/episode_000003/frame_000120.png'
    """
    return f"{camera_folder(camera)}/episode_{episode_index:06d}/frame_{frame_index:06d}.png"


def camera_folder(camera: str) -> str:
    """A camera key as one folder name (``observations/images/cam_high`` → ``observations_images_cam_high``)."""
    return "_".join(part for part in re.split(r"[^A-Za-z0-9._-]+", camera) if part) or "camera"


_FRAME_ID = re.compile(r"^(?P<batch>[^/]+)/(?P<camera>[^/]+)/episode_(?P<episode>\d+)/frame_(?P<frame>\d+)$")


def parse_frame_image_id(image_id: str) -> tuple[str, str, int, int] | None:
    """(batch, camera folder, episode index, frame index) of a sampled frame's image id, else None.

    >>> parse_frame_image_id("b1/observation.images.top/episode_000003/frame_000120")
    ('b1', 'observation.images.top', 3, 120)
    """
    found = _FRAME_ID.match(image_id)
    if found is None:
        return None
    return found["batch"], found["camera"], int(found["episode"]), int(found["frame"])


def batch_of_manifest(key: str) -> str:
    """The batch folder name of a key matched by :data:`MANIFESTS_GLOB` (may be an invalid name)."""
    return posixpath.basename(posixpath.dirname(key))


def review_prefix(batch: str) -> str:
    """``reviews/<batch>``: the batch's review drop folder."""
    return join_key(REVIEWS, check_batch_name(batch))


def review_file(batch: str, relative: str) -> str:
    return join_key(review_prefix(batch), relative)


def batch_of_review(key: str) -> str:
    """The batch folder of a key under ``reviews/`` (``reviews/<batch>/...``)."""
    return key.split("/")[1]


def peer_review_key(batch: str) -> str:
    return review_file(batch, PEER_REVIEW_FILE)


def label_studio_pulls_prefix(batch: str) -> str:
    return review_file(batch, LABEL_STUDIO_PULLS)


def label_studio_pull_key(batch: str, stamp: str, digest: str) -> str:
    """One snapshot pulled from a live Label Studio: ``<UTC time>-<content digest>.json``, so the
    newest sorts last and an unchanged pull is recognised by its name."""
    return join_key(label_studio_pulls_prefix(batch), f"{stamp}-{digest}.json")


def ground_truth_key(batch: str) -> str:
    """The demo's exact instances of a batch (never part of an upload: annotators must not see them)."""
    return join_key("ground_truth", check_batch_name(batch), "instances.parquet")


# -- per-batch tables -------------------------------------------------------------------------

CAPTURES_PREFIX = "tables/captures"
QUARANTINE_PREFIX = "tables/quarantine"
PREMASKS_PREFIX = "tables/premasks"
ANNOTATIONS_PREFIX = "tables/annotations"
LABEL_STUDIO_TASKS_PREFIX = "tables/label_studio"
KEYFRAMES_PREFIX = "tables/keyframes"
PROPAGATED_PREFIX = "tables/propagated"
TEMPORAL_CONSISTENCY_PREFIX = "tables/temporal_consistency"


def _batch_table(prefix: str, batch: str) -> str:
    return join_key(prefix, f"{check_batch_name(batch)}.parquet")


def captures_key(batch: str) -> str:
    return _batch_table(CAPTURES_PREFIX, batch)


def quarantine_key(batch: str) -> str:
    return _batch_table(QUARANTINE_PREFIX, batch)


def premasks_key(batch: str) -> str:
    return _batch_table(PREMASKS_PREFIX, batch)


def annotations_key(batch: str) -> str:
    return _batch_table(ANNOTATIONS_PREFIX, batch)


def label_studio_tasks_key(batch: str) -> str:
    """The Label Studio task id of every image of a batch pushed to a live server."""
    return _batch_table(LABEL_STUDIO_TASKS_PREFIX, batch)


def keyframes_key(batch: str) -> str:
    """Which frames of the batch's episodes go to people first (annotation_tasks)."""
    return _batch_table(KEYFRAMES_PREFIX, batch)


def propagated_key(batch: str) -> str:
    return _batch_table(PROPAGATED_PREFIX, batch)


def temporal_consistency_key(batch: str) -> str:
    return _batch_table(TEMPORAL_CONSISTENCY_PREFIX, batch)


def batch_of_table(key: str) -> str:
    """The batch of a per-batch table key (``tables/<table>/<batch>.parquet``).

    >>> batch_of_table("tables/annotations/b1.parquet")
    'b1'
    """
    return posixpath.basename(key).removesuffix(".parquet")


def batch_tables(keys: list[str]) -> list[str]:
    """The per-batch table keys among a listing of one table's prefix."""
    return [k for k in keys if k.endswith(".parquet")]


# -- annotation tasks -------------------------------------------------------------------------


def tasks_prefix(batch: str) -> str:
    return join_key("tasks", check_batch_name(batch))


def task_files(batch: str) -> dict[str, str]:
    """Role -> key of the task files written for a batch (what each tool imports)."""
    out = tasks_prefix(batch)
    return {
        "label_studio_config": join_key(out, "label_studio", "labeling_config.xml"),
        "label_studio_tasks": join_key(out, "label_studio", "tasks.json"),
        "cvat_annotations": join_key(out, "cvat", "annotations.xml"),
        "cvat_labels": join_key(out, "cvat", "labels.json"),
    }


def propagated_task_files(batch: str) -> dict[str, str]:
    """The second round's task files: the propagated frames with their masks as predictions."""
    out = join_key(tasks_prefix(batch), "propagated")
    return {
        "label_studio_tasks": join_key(out, "label_studio", "tasks.json"),
        "cvat_annotations": join_key(out, "cvat", "annotations.xml"),
        "cvat_frames": join_key(out, "cvat", "frames.txt"),
    }


def team_files(batch: str) -> dict[str, str]:
    """Who labels which of the batch's images (the pair of its gold images, one person for each of
    the others) as the people and the tools take it: the plan, the pair, Label Studio saved filters
    and a CVAT job list, one per annotator."""
    out = join_key(tasks_prefix(batch), "team")
    return {
        "work_plan": join_key(out, "work_plan.csv"),
        "pair": join_key(out, TEAM_PAIR_FILE),
        "label_studio_views": join_key(out, "label_studio_views.json"),
        "cvat_jobs": join_key(out, "cvat_jobs.json"),
    }


TEAM_PAIR_FILE = "pair.json"
#: Every batch's pair, for the rotation.
TEAM_PAIRS_GLOB = f"tasks/*/team/{TEAM_PAIR_FILE}"


# -- the annotation guideline: every revision kept ---------------------------------------------

GUIDELINES = "guidelines"
GUIDELINE_REVISIONS_KEY = f"{GUIDELINES}/revisions.json"
GUIDELINE_RULES_FILE = "rules.json"
GUIDELINE_MARKDOWN_FILE = "guideline.md"
GUIDELINE_HTML_FILE = "guideline.html"
#: Written last inside a revision's folder: its presence = the document and its pictures are whole.
GUIDELINE_EXAMPLES_FILE = "examples.parquet"


def guideline_file(revision: int, name: str) -> str:
    """A file of a guideline revision's folder.

    >>> guideline_file(3, "guideline.md")
    'guidelines/r003/guideline.md'
    """
    return join_key(GUIDELINES, f"r{int(revision):03d}", name)


# -- quality control: peer-review and expert-audit samples -------------------------------------

QC_PREFIX = "tables/qc"
EXPERT_AUDIT_FILE = "expert_audit.csv"


def qc_assignments_key(batch: str) -> str:
    return _batch_table(QC_PREFIX, batch)


def qc_task_files(batch: str) -> dict[str, str]:
    """The samples as the people and tools take them: a sheet per tier to fill in and drop into
    ``reviews/<batch>/`` (the same columns as the verdict files), Label Studio saved filters, a CVAT job list."""
    out = join_key(tasks_prefix(batch), "qc")
    return {
        "peer_review_sheet": join_key(out, PEER_REVIEW_FILE),
        "expert_audit_sheet": join_key(out, EXPERT_AUDIT_FILE),
        "label_studio_views": join_key(out, "label_studio_views.json"),
        "cvat_jobs": join_key(out, "cvat_jobs.json"),
    }


def expert_audit_key(batch: str) -> str:
    return review_file(batch, EXPERT_AUDIT_FILE)


# -- corpus-wide tables -----------------------------------------------------------------------

CORPUS_ANNOTATIONS_KEY = "tables/corpus/annotations.parquet"
CORPUS_IMAGES_KEY = "tables/corpus/images.parquet"
QUALITY_ISSUES_KEY = "tables/quality/issues.parquet"
QUALITY_SUMMARY_KEY = "tables/quality/summary.json"
REFINEMENT_KEY = "tables/quality/refinement.parquet"
QUALITY_DUPLICATES_KEY = "tables/quality/duplicates.parquet"  # duplicate_images, the one corpus-wide check


def stage_part_key(stage: str, batch: str, name: str) -> str:
    """``tables/<stage>/batches/<batch>/<name>``: one batch's rows of a corpus-wide stage
    (``corpus``, ``quality``), made once and kept while the batch's inputs are unchanged; the
    corpus-wide table is these parts streamed one after another.

    >>> stage_part_key("corpus", "b1", "annotations.parquet")
    'tables/corpus/batches/b1/annotations.parquet'
    """
    return join_key("tables", stage, "batches", check_batch_name(batch), name)


#: The file of a stage's batch part written last: the digest of the inputs the part was made from.
STAGE_PART_DIGEST = "digest.json"
AGREEMENT_TABLES: dict[str, str] = {
    name: f"tables/agreement/{name}.parquet"
    for name in (
        "per_class",
        "per_annotator",
        "per_batch",
        "per_image",
        "per_revision",
        "per_batch_gold",
        "drift",
    )
}
SPLITS_KEY = "tables/splits/splits.parquet"
SPLIT_INFO_KEY = "tables/splits/info.json"
#: Every image ever released, with its split and the first release that held it: adding a batch
#: never moves a released image to another split (dataset_splits pins them; dataset_card adds to it).
#: One part per completed release, never rewritten (:func:`released_splits_part`); this single
#: file is where stores before the parts kept it, read as the oldest part.
RELEASED_SPLITS_KEY = "tables/splits/released.parquet"
RELEASED_SPLITS_PARTS = "tables/splits/released"


def released_splits_part(recorded_at: str, version: str) -> str:
    """The registry's part of one release: the images it was the first to hold. Named by the time
    it was recorded, so a listing is in recording order, and by the version, so two releases
    recorded at once write two parts (no read-modify-write of a shared file, no lost update).

    >>> released_splits_part("20261203T093000.000001Z", "tabletop-v2-ab12")
    'tables/splits/released/20261203T093000.000001Z-tabletop-v2-ab12.parquet'
    """
    return join_key(RELEASED_SPLITS_PARTS, f"{recorded_at}-{version}.parquet")


BASELINE_LATEST_KEY = "models/baseline/latest.json"
ZERO_SHOT_KEY = "tables/zero_shot/summary.json"
ACTIVE_LEARNING_QUEUE_KEY = "tables/active_learning/queue.parquet"


def baseline_checkpoint_key(run: str) -> str:
    """A trained baseline's state dict; ``run`` is its checkpoint digest."""
    return join_key("models", "baseline", run, "model.pt")


def baseline_metrics_key(run: str) -> str:
    return join_key("models", "baseline", run, "metrics.json")


# -- releases ---------------------------------------------------------------------------------

RELEASES = "releases"
RELEASE_LATEST_KEY = f"{RELEASES}/latest.json"
#: Inside a release folder: written last, with every file's SHA-256; its presence = complete.
RELEASE_MANIFEST_FILE = "release.json"
#: Inside a release folder: what the export step wrote (a re-run does not rewrite the exports).
RELEASE_EXPORTS_FILE = "exports.json"
RELEASE_MANIFESTS_GLOB = f"{RELEASES}/*/{RELEASE_MANIFEST_FILE}"
#: Inside a release folder, written before exports.json: for every file the exports made, the
#: unit it holds (an image, an episode, a shard), the digest of that unit's inputs, and whether
#: its bytes were written or shared with an earlier release. The next release reuses by it.
RELEASE_INDEX_FILE = "index.parquet"
DATASHEET_FILE = "DATASHEET.md"
MASK_AREA_HISTOGRAM_FILE = "stats/mask_area_histogram.png"
STATISTICS_FILE = "stats/statistics.json"


#: Small values Dagster steps hand to each other (resources.StoreIOManager), by run and step.
DAGSTER_IO = "tables/dagster_io"
#: Each export shard's part of a release index, written last by its step (present = the shard is
#: done); outside the release folder, which holds only the release.
RELEASE_PARTS = "tables/release_parts"


#: The "split" under which a format made from the whole release in a step of its own keeps its
#: part of the index (``release_part_key(version, WHOLE_RELEASE_PART, format)``).
WHOLE_RELEASE_PART = "whole"


def release_part_key(version: str, split: str, shard: str) -> str:
    """The key of one export shard's part of the release index.

    >>> release_part_key("tabletop-v1-ab12", "train", "b1-0")
    'tables/release_parts/tabletop-v1-ab12/train/b1-0.parquet'
    """
    return join_key(RELEASE_PARTS, version, split, f"{shard}.parquet")


#: The reload checks' verdicts on one shard (or one whole-release format), made by a step beside
#: the exports, by the run that made them: that run's blocking checks add them up instead of
#: reading those files again; a later run checks for itself.
RELEASE_CHECK_PARTS = "tables/release_checks"


def release_check_part_key(version: str, run: str, split: str, shard: str) -> str:
    """The key of the checks' verdicts on one shard, by the run that checked it.

    >>> release_check_part_key("tabletop-v1-ab12", "0f3c", "train", "b1-0")
    'tables/release_checks/tabletop-v1-ab12/0f3c/train/b1-0.json'
    """
    return join_key(RELEASE_CHECK_PARTS, version, run, split, f"{shard}.json")


def release_prefix(version: str) -> str:
    return join_key(RELEASES, version)


def version_of_release_manifest(key: str) -> str:
    """The version of a key matched by :data:`RELEASE_MANIFESTS_GLOB`."""
    return key.split("/")[1]


def release_images_folder(split: str) -> str:
    """Inside a release folder: the released images of a split, byte for byte (shared by every format)."""
    return f"images/{split}"


def release_image_file(split: str, stem: str, ext: str) -> str:
    return f"{release_images_folder(split)}/{stem}{ext}"


def provenance_file(table: str, ext: str) -> str:
    """Inside a release folder: a provenance table (``images`` / ``annotations``, ``csv`` / ``parquet``;
    ``robot_datasets``, ``json``: the sources of the robot batches)."""
    return f"provenance/{table}.{ext}"


# -- previews: the full-size pictures beside each materialization -----------------------------


def contact_sheet_preview(batch: str) -> str:
    return join_key("previews", "raw_captures", check_batch_name(batch), "contact_sheet.png")


def premask_overlays_preview(batch: str) -> str:
    return join_key("previews", "sam2_premasks", check_batch_name(batch), "overlays.png")


def worst_transitions_preview(batch: str) -> str:
    return join_key("previews", "episode_propagation", check_batch_name(batch), "worst_transitions.png")


WORST_IMAGES_PREVIEW = "previews/quality_report/worst_images.png"
PER_CLASS_IOU_PREVIEW = "previews/agreement_report/per_class_iou.png"
DISAGREEMENTS_PREVIEW = "previews/agreement_report/largest_disagreements.png"
ACTIVE_LEARNING_PREVIEW = "previews/active_learning_queue/top12.png"


def confusion_preview(run: str) -> str:
    return join_key("previews", "baseline_model", run, "confusion.png")


def release_samples_preview(version: str) -> str:
    return join_key("previews", "dataset_release", version, "samples.png")

"""annotation_tasks: a batch's pre-masks as files that Label Studio and CVAT import.

For each batch, under ``tasks/<batch>/`` in the store:

* ``label_studio/labeling_config.xml`` - BrushLabels and PolygonLabels of the taxonomy;
* ``label_studio/tasks.json`` - one task per image (``data.image`` URL, our ``image_id``),
  its kept, classed pre-masks as one prediction of brush RLE results with ``score`` and
  ``model_version``;
* ``cvat/annotations.xml`` - "CVAT for images 1.1" with a ``<mask source="semi-auto">`` per
  kept, classed pre-mask, for "Upload annotations" into a task holding the batch's images;
* ``cvat/labels.json`` - the task's labels, for CVAT's raw label constructor.

Rejected pre-masks (under the score threshold) and masks without a class (automatic
generation) are not sent: annotators should not start from them. They are counted.

With a team roster, who labels what is planned too (``tasks/<batch>/team/``): a share of the
images is gold, labelled independently by the batch's pair of annotators, and the pairs rotate
from batch to batch (the pair that has had the fewest batches goes next), so that no annotator's
agreement is measured against one partner only; each other image goes to one person, in turn. A
calibration round (a batch named with the calibration prefix) is labelled by everyone.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote

from dataset_pipeline import layout, schemas
from dataset_pipeline.formats.cvat import tasks as cvat
from dataset_pipeline.formats.label_studio import tasks as label_studio
from dataset_pipeline.formats.label_studio.client import LabelStudioClient, PushResult, push_tasks
from dataset_pipeline.masks import decode_mask
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.taxonomy import Taxonomy

if TYPE_CHECKING:
    import pandas as pd


def local_files_url(path: str) -> str:
    """Label Studio's local-files URL of a path relative to LOCAL_FILES_DOCUMENT_ROOT.

    >>> local_files_url("incoming/b1/images/a b.jpg")
    '/data/local-files/?d=incoming/b1/images/a%20b.jpg'
    """
    return "/data/local-files/?d=" + quote(path)


def _none_sent(reason: str | None) -> str:
    return "no pre-mask: " + (reason or "no kept pre-mask with a class for this image")


def default_image_url_mode(s3: bool) -> str:
    """How task files point at images unless configured: Label Studio's local-files serving for a
    folder store, the store's own ``s3://`` URLs for an S3 store (a Label Studio project with that
    bucket connected as source storage resolves them).

    >>> default_image_url_mode(s3=True)
    'store'
    """
    return "store" if s3 else "local-files"


def image_url_builder(
    store: DatasetStore, mode: str, document_root: str | None = None, base_url: str | None = None
) -> Callable[[str], str]:
    """A function from a store key to the image URL the annotation tool should load."""
    if mode == "local-files":
        if not store.is_local:
            raise ValueError(
                "image_url_mode 'local-files' needs a local store; use 'store' or 'base-url' for S3"
            )
        root = posixpath.normpath(document_root or store.root)
        relative_root = posixpath.relpath(store.root, root)
        if relative_root.startswith(".."):
            raise ValueError(f"the store {store.root!r} is not under the local-files document root {root!r}")
        return lambda key: local_files_url(posixpath.normpath(posixpath.join(relative_root, key)))
    if mode == "store":
        return store.url
    if mode == "base-url":
        if not base_url:
            raise ValueError("image_url_mode 'base-url' needs image_base_url")
        return lambda key: base_url.rstrip("/") + "/" + quote(key)
    raise ValueError(f"unknown image_url_mode {mode!r}; use local-files, store or base-url")


@dataclass
class TaskExport:
    """What :func:`write_annotation_tasks` wrote."""

    files: dict[str, str] = field(default_factory=dict)  # role -> store key
    tasks: int = 0
    masks_sent: int = 0
    skipped_rejected: int = 0
    skipped_unclassed: int = 0
    masks_per_class: dict[str, int] = field(default_factory=dict)
    label_studio_tasks: list[dict] = field(default_factory=list, repr=False)  # as written to tasks.json
    #: Why no pre-mask at all went out (None when some did): said in the task files too.
    no_premask_reason: str | None = None
    #: Frames held back until their keyframes are reviewed and propagated.
    deferred: int = 0


def no_premask_reason(premasks) -> str | None:  # premasks: schemas.PREMASKS
    """Why none of a batch's pre-masks can be sent to annotators, or None when some can: a pre-mask
    goes out only when it scored at least the threshold and has a class to label it with. The
    reason says what to configure, since a user without a detector of her own gets no classed
    pre-mask until she does.

    >>> import pandas as pd
    >>> print(no_premask_reason(pd.DataFrame({"rejected": [False], "class_id": [None]})))
    no classed pre-mask can be made: the upload has no prompts.csv and no detector is configured, ...
    """
    if not len(premasks):
        return "the pre-mask stage made no mask in these images"
    kept = premasks[~premasks.rejected]
    if not len(kept):
        return f"every pre-mask ({len(premasks)}) scored under the score threshold (sam2.score_threshold)"
    if kept.class_id.isna().all():
        detectors = sorted({d for d in premasks.get("detector", []) if isinstance(d, str) and d})
        if detectors or "detector" in set(premasks.get("prompt_source", [])):
            return (
                f"the detector ({', '.join(detectors)}) found no box above its class thresholds, so only "
                "automatic segments without a class were made: lower sam2.detector_threshold or a class's "
                "detection_threshold, or add prompts and synonyms to the taxonomy"
            )
        return NO_CLASSED_PREMASK
    return None


#: Said by the stage, the task files and the ML backend when nothing can give a pre-mask a class.
NO_CLASSED_PREMASK = (
    "no classed pre-mask can be made: the upload has no prompts.csv and no detector is configured, so "
    "only automatic segments without a class were made. Set sam2.detector_path (env "
    "DATASET_PIPELINE_DETECTOR) to a local OWLv2 folder as transformers' save_pretrained writes it "
    "(the taxonomy's prompts and synonyms are its queries), or upload a prompts.csv of boxes with class names"
)


def first_round(captures, keyframes=None):  # -> schemas.CAPTURES
    """The captures that go out first: of episodes with a keyframe table, the keyframes; else all."""
    if keyframes is None or not len(keyframes):
        return captures
    return captures[captures.image_id.isin(set(keyframes.image_id[keyframes.keyframe]))]


def write_annotation_tasks(
    store: DatasetStore,
    batch: str,
    taxonomy: Taxonomy,
    image_url: Callable[[str], str],
    cvat_image_names: str = "relative",
    *,
    keyframes=None,  # schemas.KEYFRAMES, or None: every image goes out
) -> TaskExport:
    """Write the Label Studio and CVAT task files of ``batch`` (atomically, each file whole).

    With a keyframe table only the keyframes go out: the frames between them go out after
    propagation, with the propagated masks as their predictions (:func:`write_propagated_tasks`).
    """
    captures = store.read_parquet(layout.captures_key(batch))
    premasks = store.read_parquet(layout.premasks_key(batch))
    export = TaskExport(
        skipped_rejected=int(premasks.rejected.sum()),
        skipped_unclassed=int((~premasks.rejected & premasks.class_id.isna()).sum()),
    )
    sent = first_round(captures, keyframes)
    export.deferred = len(captures) - len(sent)
    captures = sent
    export.no_premask_reason = no_premask_reason(premasks)
    sendable = premasks[~premasks.rejected & premasks.class_id.notna()]
    model_versions = sorted(set(premasks.model_version)) or ["none"]
    files = layout.task_files(batch)
    contents = _task_contents(
        batch, captures, sendable, ",".join(model_versions), taxonomy, image_url, cvat_image_names, export
    )
    contents |= {
        "label_studio_config": label_studio.labeling_config(taxonomy).encode(),
        "cvat_labels": cvat.labels_json(taxonomy),
    }
    for role, key in files.items():
        store.write_bytes(key, contents[role])
        export.files[role] = key
    return export


def write_propagated_tasks(
    store: DatasetStore,
    batch: str,
    taxonomy: Taxonomy,
    image_url: Callable[[str], str],
    propagated,  # schemas.PROPAGATED
    cvat_image_names: str = "relative",
) -> TaskExport:
    """The second round's task files: each propagated frame with its propagated masks as the
    prediction people correct (same task shapes as the first round's; ``meta.propagated_from``
    names the keyframes). CVAT replaces a task's annotations on upload, so these frames are a
    task of their own: ``frames.txt`` lists them for its creation."""
    captures = store.read_parquet(layout.captures_key(batch))
    captures = captures[captures.image_id.isin(set(propagated.image_id))]
    export = TaskExport()
    versions = ",".join(sorted(set(propagated.model_version))) or "none"
    sources = dict(zip(propagated.image_id, propagated.source_keyframes, strict=True))
    contents = _task_contents(
        batch, captures, propagated, versions, taxonomy, image_url, cvat_image_names, export, sources
    )
    names = [layout.upload_relative(batch, uri) for uri in captures.uri]
    contents["cvat_frames"] = ("\n".join(names) + "\n").encode()
    for role, key in layout.propagated_task_files(batch).items():
        store.write_bytes(key, contents[role])
        export.files[role] = key
    return export


def _task_contents(
    batch: str,
    captures,
    masks,
    model_version: str,
    taxonomy: Taxonomy,
    image_url: Callable[[str], str],
    cvat_image_names: str,
    export: TaskExport,
    propagated_from: dict[str, str] | None = None,
) -> dict[str, bytes]:
    by_image = {image_id: group for image_id, group in masks.groupby("image_id", sort=False)}
    ls_tasks, cvat_images = [], []
    for frame, capture in enumerate(captures.itertuples()):
        group = by_image.get(capture.image_id)
        items = []
        if group is not None:
            for row in group.itertuples():
                name = taxonomy.by_id(int(row.class_id)).name
                mask = decode_mask(row.rle, row.height, row.width)
                items.append(label_studio.TaskMask(row.premask_id, name, mask, float(row.score)))
                export.masks_per_class[name] = export.masks_per_class.get(name, 0) + 1
        export.masks_sent += len(items)
        meta = {"batch": batch, "scene_id": capture.scene_id, "episode_id": capture.episode_id}
        if propagated_from is not None:
            meta["propagated_from"] = propagated_from.get(capture.image_id, "")
        elif not items:
            meta["pre_annotation"] = _none_sent(export.no_premask_reason)
        ls_tasks.append(
            label_studio.build_task(
                image_url(capture.uri),
                capture.image_id,
                int(capture.height),
                int(capture.width),
                items,
                model_version=model_version,
                meta=meta,
            )
        )
        relative = layout.upload_relative(batch, capture.uri)
        name = relative if cvat_image_names == "relative" else posixpath.basename(relative)
        cvat_images.append(
            cvat.CvatImage(
                frame=frame,
                name=name,
                width=int(capture.width),
                height=int(capture.height),
                shapes=[cvat.CvatShape(label=i.class_name, mask=i.mask) for i in items],
            )
        )
    export.tasks, export.label_studio_tasks = len(ls_tasks), ls_tasks
    return {
        "label_studio_tasks": label_studio.tasks_json(ls_tasks),
        "cvat_annotations": cvat.annotations_xml(
            cvat_images,
            taxonomy,
            f"{batch}",
            note=_none_sent(export.no_premask_reason) if export.no_premask_reason else None,
        ),
    }


def push_to_label_studio(
    store: DatasetStore,
    batch: str,
    client: LabelStudioClient,
    title: str,
    taxonomy: Taxonomy,
    tasks: list[dict],
) -> PushResult:
    """Import the batch's tasks (with their predictions) into the project ``title``, once per image;
    record the Label Studio task id of every image (``layout.label_studio_tasks_key``), added to
    those of earlier pushes (the keyframes go first, the propagated frames after them)."""
    import pandas as pd

    pushed = push_tasks(client, title, taxonomy, tasks)
    key = layout.label_studio_tasks_key(batch)
    table = schemas.LABEL_STUDIO_TASKS.from_columns(
        {
            "image_id": list(pushed.task_ids),
            "task_id": list(pushed.task_ids.values()),
            "project_id": pushed.project_id,
        }
    )
    if store.exists(key):
        table = pd.concat([store.read_parquet(key), table], ignore_index=True)
        table = table.drop_duplicates("image_id", keep="last").reset_index(drop=True)
    store.write_parquet(key, table)
    return pushed


# -- who labels what: the team's work plan ------------------------------------------------------

#: The share of a batch's images labelled twice, by its pair (the agreement report's gold set).
GOLD_SHARE = 0.2


@dataclass(frozen=True)
class TeamSettings:
    """The annotators (in rotation order) and the share of each batch that their pair labels twice."""

    annotators: tuple[str, ...] = ()
    gold_share: float = GOLD_SHARE
    calibration_prefix: str = "calibration"


def stable_rank(*parts: str) -> int:
    """A pseudo-random rank (the order a sample is drawn in), the same on every machine and run.

    >>> stable_rank("b1", "gold", "b1/0001") == stable_rank("b1", "gold", "b1/0001")
    True
    """
    return int(hashlib.sha1("/".join(parts).encode()).hexdigest()[:12], 16)


def annotator_pairs(annotators: Sequence[str]) -> list[tuple[str, str]]:
    """Every pair of the roster once, in rotation order.

    >>> annotator_pairs(["a", "b", "c"])
    [('a', 'b'), ('a', 'c'), ('b', 'c')]
    """
    return list(itertools.combinations(dict.fromkeys(annotators), 2))


def next_pair(annotators: Sequence[str], earlier: Sequence[Sequence[str]]) -> tuple[str, ...]:
    """The pair of a new batch: of the roster's pairs, the one with the fewest batches so far
    (``earlier``: the pairs of the batches planned before); ties go in rotation order. Two batches
    planned at the same moment may get the same pair; the next one evens it out.

    >>> next_pair(["a", "b", "c"], [("a", "b"), ("a", "c")])
    ('b', 'c')
    >>> next_pair(["a"], [])
    ('a',)
    """
    pairs = annotator_pairs(annotators)
    if not pairs:
        return tuple(annotators)
    used = [tuple(sorted(p)) for p in earlier]
    return min(pairs, key=lambda p: (used.count(tuple(sorted(p))), pairs.index(p)))


def plan_work(
    image_ids: Sequence[str],
    image_files: Sequence[str],
    batch: str,
    team: TeamSettings,
    pair: Sequence[str],
    earlier: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """schemas.WORK_PLAN of a batch: ``gold_share`` of the images (at least one; drawn by stable
    rank) for each of ``pair``, the others one person each, the roster in turn; a calibration
    round's every image for everyone. The rows of ``earlier`` (the plan as it was) stay as they
    are: only the images new to the batch are planned, topping the gold share up.

    >>> team = TeamSettings(("a", "b", "c"), gold_share=0.25)
    >>> plan = plan_work(["1", "2", "3", "4"], ["1.jpg", "2.jpg", "3.jpg", "4.jpg"], "b1", team, ("a", "b"))
    >>> plan.role.value_counts().to_dict(), sorted(plan[plan.role == "gold"].annotator_id)
    ({'single': 3, 'gold': 2}, ['a', 'b'])
    """
    files = dict(zip(image_ids, image_files, strict=True))
    kept = earlier[earlier.image_id.isin(files)] if earlier is not None else schemas.WORK_PLAN.frame()
    new = sorted(set(files) - set(kept.image_id), key=lambda i: stable_rank(batch, "gold", i))
    rows = [r._asdict() for r in kept.itertuples(index=False)]

    def add(image_id: str, person: str, role: str) -> None:
        rows.append(
            {"image_id": image_id, "image_file": files[image_id], "annotator_id": person, "role": role}
        )

    if batch.startswith(team.calibration_prefix):
        for image_id in new:
            for person in team.annotators:
                add(image_id, person, "calibration")
    else:
        wanted = max(1, round(team.gold_share * len(files))) if team.gold_share > 0 and len(pair) > 1 else 0
        n_gold = min(len(new), max(0, wanted - kept.image_id[kept.role == "gold"].nunique()))
        for image_id in new[:n_gold]:
            for person in pair:
                add(image_id, person, "gold")
        turn = int((kept.role == "single").sum())
        for n, image_id in enumerate(new[n_gold:]):
            add(image_id, team.annotators[(turn + n) % len(team.annotators)], "single")
    order = {image_id: n for n, image_id in enumerate(image_ids)}
    table = schemas.WORK_PLAN.frame(rows)
    return table.sort_values("image_id", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)


@dataclass
class WorkPlan:
    """What :func:`write_work_plan` wrote: the plan, its pair, the saved filters, the files."""

    plan: pd.DataFrame
    pair: tuple[str, ...]
    views: list[dict]
    files: dict[str, str]  # role -> key


def batch_pairs(store: DatasetStore, but: str) -> list[tuple[str, ...]]:
    """The pairs of the batches planned so far (calibration rounds have none), but ``but``'s."""
    pairs = []
    for key in store.glob(layout.TEAM_PAIRS_GLOB):
        record = json.loads(store.read_bytes(key))
        if record.get("batch") != but and record.get("pair") and len(record["pair"]) > 1:
            pairs.append(tuple(record["pair"]))
    return pairs


def write_work_plan(
    store: DatasetStore,
    batch: str,
    captures,  # schemas.CAPTURES of the images sent
    team: TeamSettings,
    task_ids: dict[str, int] | None = None,
) -> WorkPlan | None:
    """Plan who labels the batch's images (None without a roster): a batch keeps the pair and the
    plan it was given first, so a re-run (more keyframes, a new push) moves no image to other people.
    Writes the plan, the pair, one Label Studio saved filter and one CVAT job per annotator."""
    if not team.annotators:
        return None
    files = layout.team_files(batch)
    calibration = batch.startswith(team.calibration_prefix)
    if store.exists(files["pair"]):
        pair = tuple(json.loads(store.read_bytes(files["pair"]))["pair"])
    else:
        pair = () if calibration else next_pair(team.annotators, batch_pairs(store, batch))
    image_files = [layout.upload_relative(batch, uri) for uri in captures.uri]
    plan = plan_work(list(captures.image_id), image_files, batch, team, pair, read_work_plan(store, batch))
    views, jobs = [], []
    for person, mine in plan.groupby("annotator_id", sort=False):
        gold = mine.role != "single"
        views.append(label_studio.saved_filter(f"Labelling {batch}: {person}", mine.image_id, task_ids))
        jobs.append(
            {
                "name": f"{batch}-{person}",
                "assignee": person,
                "frames": list(mine.image_file),
                "gold_frames": list(mine.image_file[gold]),
            }
        )
    record = {
        "batch": batch,
        "pair": list(pair),
        "roster": list(team.annotators),
        "gold_share": team.gold_share,
    }
    contents = {
        "work_plan": plan.to_csv(index=False).encode(),
        "label_studio_views": json.dumps(views, indent=2).encode(),
        "cvat_jobs": json.dumps(jobs, indent=2).encode(),
        "pair": json.dumps(record, indent=2).encode(),  # last: a pair on record = its plan is whole
    }
    for role, data in contents.items():
        store.write_bytes(files[role], data)
    return WorkPlan(plan, pair, views, files)


def read_work_plan(store: DatasetStore, batch: str) -> pd.DataFrame | None:
    """The batch's plan as written, or None when none was made (no roster)."""
    import io

    import pandas as pd

    key = layout.team_files(batch)["work_plan"]
    if not store.exists(key):
        return None
    return pd.read_csv(io.BytesIO(store.read_bytes(key)), dtype=str, keep_default_na=False)

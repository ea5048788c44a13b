"""The demo's simulated annotators: people reviewing the pre-masks in Label Studio and CVAT.

Three annotators of different skill start from a batch's pre-masks and the demo's ground
truth and write their work as the tools' own export files into the review drop folder
``reviews/<batch>/``:

* ``ann_a@demo.example`` and ``ann_b@demo.example`` work in Label Studio: one JSON export
  holds their annotations (brush RLE, ``completed_by``, ``created_at``, ``lead_time``,
  results started from predictions keep the prediction's id and ``origin``);
* ``ann_c@demo.example`` works in CVAT: a "CVAT for images 1.1" job export (``meta/job/assignee``),
  with semi-auto masks where a pre-mask was accepted. Gold images are a Label Studio
  project with three annotations per task, so ``ann_c`` has timed work there too (CVAT's
  XML carries no working time).

``ann_a`` is careful and slow, ``ann_b`` average, ``ann_c`` the planted weak annotator:
about 2x faster than the others, accepting half the pre-masks unrefined, missing thin
structures, wider boundary jitter and some class confusion. They work to the batch's plan: about
20% of its images are gold, labelled by the batch's pair (the pairs rotate from batch to batch);
the rest get one annotator each. The peer reviewers' and the
expert auditor's verdicts on the images qc_assignments sampled are :func:`simulate_qc_verdicts`
(``peer_review.csv``, ``expert_audit.csv``: image_file, annotator_id, reviewer_id, accepted,
reviewed_at), written once the samples exist, as people would return them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from dataset_pipeline import layout, schemas
from dataset_pipeline.annotation_tasks import GOLD_SHARE, first_round, read_work_plan
from dataset_pipeline.formats.cvat import tasks as cvat
from dataset_pipeline.formats.label_studio.codec import mask_to_brush_rle
from dataset_pipeline.formats.label_studio.tasks import BRUSH_FROM_NAME, IMAGE_TO_NAME, premask_result_id
from dataset_pipeline.masks import decode_mask, rle_iou
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.taxonomy import Taxonomy, load_taxonomy

#: The expert auditor is stricter than a peer: an accepted image passes the audit this often.
AUDIT_STRICTNESS = 0.9


@dataclass(frozen=True)
class AnnotatorSkill:
    """How one simulated person works."""

    annotator_id: str
    tool: str  # label_studio or cvat
    jitter_px: int  # boundary displacement, up to this many pixels
    accept_unrefined: float  # probability of accepting a pre-mask as it is
    miss_thin: float  # probability of missing a thin structure
    confusion: float  # probability of picking a wrong class
    seconds_per_mask: float  # when drawing or refining
    accuracy: float  # probability that a peer reviewer accepts the image


ANNOTATORS: tuple[AnnotatorSkill, ...] = (
    AnnotatorSkill("ann_a@demo.example", "label_studio", 1, 0.10, 0.0, 0.0, 42.0, 0.97),
    AnnotatorSkill("ann_b@demo.example", "label_studio", 1, 0.20, 0.05, 0.01, 34.0, 0.92),
    AnnotatorSkill("ann_c@demo.example", "cvat", 2, 0.45, 0.25, 0.03, 16.0, 0.65),
)


@dataclass(frozen=True)
class SimulatedReview:
    """What :func:`simulate_review` wrote."""

    files: list[str]
    images: int
    gold_images: int
    annotations: int
    #: When the team met and the revised guideline took effect (half-way through the batch), if it did.
    revised_at: datetime | None = None


def _jitter(mask: np.ndarray, rng: np.random.Generator, max_px: int, uneven: bool = True) -> np.ndarray:
    """The mask with its boundary moved by up to ``max_px`` pixels, unevenly (as a hand would)."""
    import cv2

    if max_px <= 0:
        return mask.copy()
    k = int(rng.integers(-max_px, max_px + 1))
    out = mask.astype(np.uint8)
    if k:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(k) + 1, 2 * abs(k) + 1))
        out = cv2.dilate(out, kernel) if k > 0 else cv2.erode(out, kernel)
    # uneven edges: flip a band of boundary pixels on one side
    edge = out.astype(bool) ^ cv2.erode(out, np.ones((3, 3), np.uint8)).astype(bool)
    ys, xs = np.nonzero(edge)
    if uneven and ys.size:
        side = xs > np.median(xs) if rng.random() < 0.5 else ys > np.median(ys)
        out[ys[side], xs[side]] = 0 if rng.random() < 0.5 else 1
    result = out.astype(bool)
    return result if result.any() else mask.copy()


def _work(
    skill: AnnotatorSkill,
    truth: pd.DataFrame,
    premasks: pd.DataFrame,
    taxonomy: Taxonomy,
    rng: np.random.Generator,
    revised: bool = False,
) -> tuple[list[dict], float]:
    """One annotator's instances for one image: [{class_name, mask, z_order, premask_id, accepted}], seconds;
    ``revised``: working under the revised guideline (fewer thin structures missed, tighter edges)."""
    thin = {c.id for c in taxonomy.foreground if c.category == "thin"} | {
        taxonomy.by_name("obstacle_deformable").id
    }
    cloth = taxonomy.by_name("obstacle_deformable").id
    if revised:  # the revised rules: zoom in on fingers and cables (fewer missed), follow the cloth's
        # outer edge, decide ambiguous classes by function (fewer confusions)
        skill = replace(skill, miss_thin=skill.miss_thin / 5, confusion=skill.confusion / 3)
    instances: list[dict] = []
    seconds = 0.0
    # z_order: each shape its own layer in drawing order (ground truth is in painter's order)
    kept = premasks[~premasks.rejected] if len(premasks) else premasks
    for gt in truth.itertuples():
        gt_mask = decode_mask(gt.rle, gt.height, gt.width)
        is_thin = gt.class_id in thin and gt.area < 3000
        if is_thin and rng.random() < skill.miss_thin:
            continue
        candidates = kept[kept.class_id == gt.class_id] if len(kept) else kept
        premask_id, premask = None, None
        if len(candidates):
            ious = rle_iou(gt.rle, list(candidates.rle), gt.height, gt.width)
            best = int(np.argmax(ious))
            if ious[best] >= 0.5:
                row = candidates.iloc[best]
                premask_id, premask = row.premask_id, decode_mask(row.rle, row.height, row.width)
        class_id = int(gt.class_id)
        if rng.random() < skill.confusion:
            class_id = int(rng.choice([c.id for c in taxonomy.foreground if c.id != class_id]))
        if premask is not None and rng.random() < skill.accept_unrefined:
            mask, accepted = premask, True
            seconds += skill.seconds_per_mask * 0.15 * rng.lognormal(0, 0.2)
        else:
            # small and thin objects get at most 1 px of jitter: a person zooms in on them
            small = gt.area < 3000  # zoomed in: at most 1 px off, and only some of the time
            mask = _jitter(
                gt_mask,
                rng,
                int(rng.random() < 0.4)
                if small
                else (max(1, skill.jitter_px - 1) if revised and gt.class_id == cloth else skill.jitter_px),
                uneven=not small,
            )
            if mask.sum() < 0.5 * gt.area:
                mask = gt_mask
            accepted = False
            seconds += skill.seconds_per_mask * rng.lognormal(0, 0.3)
        instances.append(
            {
                "class_name": taxonomy.by_id(class_id).name,
                "mask": mask,
                "z_order": len(instances),
                "premask_id": premask_id,
                "accepted": accepted,
            }
        )
    return instances, seconds


def simulate_review(
    store: DatasetStore,
    batch: str,
    seed: int = 0,
    taxonomy: Taxonomy | None = None,
    *,
    gold_share: float = GOLD_SHARE,
    revise: bool = False,
) -> SimulatedReview:
    """Write the three annotators' exports to ``reviews/<batch>/``.

    Who labels which image follows the batch's work plan (``tasks/<batch>/team/``) when
    annotation_tasks made one; without one, ``gold_share`` of the images are labelled by all three
    (the agreement report's gold set) and the others by each in turn.
    ``revise``: half-way through, the team adopts the revised guideline (the time is returned as
    ``revised_at``, the second revision's effective date), and thin structures, cloth edges and
    ambiguous classes are labelled better from then on.
    """
    taxonomy = taxonomy or load_taxonomy()
    rng = np.random.default_rng([seed, 4242])
    captures = store.read_parquet(layout.captures_key(batch))
    keyframes_key = layout.keyframes_key(batch)
    if store.exists(keyframes_key):  # people label what went out: of long episodes, the keyframes
        captures = first_round(captures, store.read_parquet(keyframes_key))
    # who labels what: the team's work plan when there is one (each batch's gold to its pair)
    plan = read_work_plan(store, batch)
    planned = (
        plan.groupby("image_id", sort=False).annotator_id.agg(list).to_dict() if plan is not None else None
    )
    skills = {s.annotator_id: s for s in ANNOTATORS}
    truth = store.read_parquet(layout.ground_truth_key(batch))
    premasks = store.read_parquet(layout.premasks_key(batch))
    truth_by_image = dict(tuple(truth.groupby("image_id", sort=False)))
    premasks_by_image = dict(tuple(premasks.groupby("image_id", sort=False)))
    empty = premasks.iloc[:0]
    start = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)

    ls_tasks: list[dict] = []
    cvat_images: list[cvat.CvatImage] = []
    n_gold = n_annotations = 0
    clock = {s.annotator_id: start for s in ANNOTATORS}
    revised_at = None
    for index, capture in enumerate(captures.itertuples()):
        if revise and index == len(captures) // 2 and index:
            # the team meets, the revised guideline takes effect, everyone goes on from there
            revised_at = max(clock.values())
            clock = dict.fromkeys(clock, revised_at)
        image_file = layout.upload_relative(batch, capture.uri)
        if planned is not None:
            people = [skills[person] for person in planned.get(capture.image_id, [])]
            gold = len(people) > 1
        else:
            gold = rng.random() < gold_share
            people = list(ANNOTATORS) if gold else [ANNOTATORS[index % len(ANNOTATORS)]]
        n_gold += gold
        task: dict = {
            "id": index + 1,
            "data": {"image": f"/data/local-files/?d={capture.uri}", "image_id": capture.image_id},
            "annotations": [],
            "predictions": [],
        }
        for skill in people:
            instances, seconds = _work(
                skill,
                truth_by_image.get(capture.image_id, truth.iloc[:0]),
                premasks_by_image.get(capture.image_id, empty),
                taxonomy,
                rng,
                revised=revised_at is not None,
            )
            n_annotations += len(instances)
            clock[skill.annotator_id] += timedelta(seconds=seconds + 5)
            if gold or skill.tool == "label_studio":
                task["annotations"].append(
                    _ls_annotation(
                        skill,
                        instances,
                        seconds,
                        clock[skill.annotator_id],
                        len(ls_tasks) * 10 + len(task["annotations"]),
                        capture,
                    )
                )
            else:
                cvat_images.append(
                    cvat.CvatImage(
                        frame=len(cvat_images),
                        name=image_file,
                        width=int(capture.width),
                        height=int(capture.height),
                        shapes=[
                            cvat.CvatShape(
                                label=i["class_name"],
                                mask=i["mask"],
                                z_order=i["z_order"],
                                source="semi-auto" if i["accepted"] else "manual",
                            )
                            for i in instances
                        ],
                    )
                )
        if task["annotations"]:
            ls_tasks.append(task)

    # The file names are the tools' own: what Label Studio's and CVAT's export buttons download.
    exports = {
        layout.review_file(batch, f"label_studio/project-{batch}-export.json"): json.dumps(ls_tasks).encode(),
        layout.review_file(batch, "cvat/job-ann_c-annotations.xml"): _cvat_job_xml(
            cvat_images, taxonomy, batch, clock["ann_c@demo.example"]
        ),
    }
    files = []
    for key, data in exports.items():
        store.put_upload(key, data)
        files.append(key)
    return SimulatedReview(files, len(captures), n_gold, n_annotations, revised_at)


def _ls_annotation(skill, instances, seconds, when, annotation_id, capture) -> dict:
    results = []
    for number, inst in enumerate(instances):
        from_prediction = inst["premask_id"] is not None
        results.append(
            {
                "id": premask_result_id(inst["premask_id"])
                if from_prediction
                else f"m{annotation_id}-{number}",
                "type": "brushlabels",
                "from_name": BRUSH_FROM_NAME,
                "to_name": IMAGE_TO_NAME,
                "original_width": int(capture.width),
                "original_height": int(capture.height),
                "image_rotation": 0,
                "origin": ("prediction" if inst["accepted"] else "prediction-changed")
                if from_prediction
                else "manual",
                "value": {
                    "format": "rle",
                    "rle": mask_to_brush_rle(inst["mask"]),
                    "brushlabels": [inst["class_name"]],
                },
            }
        )
    return {
        "id": 1000 + annotation_id,
        "completed_by": {
            "id": 1 + [a.annotator_id for a in ANNOTATORS].index(skill.annotator_id),
            "email": skill.annotator_id,
        },
        "result": results,
        "was_cancelled": False,
        "ground_truth": False,
        "created_at": when.isoformat().replace("+00:00", "Z"),
        "updated_at": when.isoformat().replace("+00:00", "Z"),
        "lead_time": round(seconds, 3),
        "reviews": [],
    }


def _cvat_job_xml(images: list[cvat.CvatImage], taxonomy: Taxonomy, batch: str, updated: datetime) -> bytes:
    """A CVAT job export: the task XML with a <job> meta naming its assignee."""
    xml = cvat.annotations_xml(images, taxonomy, batch).decode()
    job_meta = (
        f"  <meta>\n    <job>\n      <id>1</id>\n      <size>{len(images)}</size>\n      <mode>annotation</mode>\n"
        f"      <updated>{updated.isoformat()}</updated>\n      <assignee>\n        <username>ann_c@demo.example</username>\n"
        "        <email>ann_c@demo.example</email>\n      </assignee>\n    </job>\n"
    )
    return xml.replace("  <meta>\n", job_meta, 1).encode()


def simulate_qc_verdicts(store: DatasetStore, batch: str, seed: int = 0) -> tuple[int, int]:
    """The verdicts on the batch's QC samples (tables/qc/<batch>.parquet), as the reviewers and the
    auditor fill in the sheets and drop them into reviews/<batch>/: a peer accepts an annotator's
    image with the annotator's ``accuracy``, the auditor a little less often. Returns (peer, audit)."""
    rng = np.random.default_rng([seed, 9090])
    assignments = store.read_parquet(layout.qc_assignments_key(batch))
    skills = {a.annotator_id: a for a in ANNOTATORS}
    counts = []
    for tier, key in (
        ("peer_review", layout.peer_review_key(batch)),
        ("expert_audit", layout.expert_audit_key(batch)),
    ):
        rows = []
        for r in assignments[assignments.tier == tier].itertuples():
            skill = skills.get(r.annotator_id)
            accuracy = skill.accuracy if skill else 0.9
            if tier == "expert_audit":
                accuracy *= AUDIT_STRICTNESS
            rows.append(
                {
                    "image_file": r.image_file,
                    "annotator_id": r.annotator_id,
                    "reviewer_id": r.reviewer_id or "expert@demo.example",
                    "accepted": bool(rng.random() < accuracy),
                    "reviewed_at": (r.assigned_at + timedelta(hours=2)).isoformat(),
                }
            )
        store.put_upload(key, schemas.PEER_REVIEW.frame(rows).to_csv(index=False).encode())
        counts.append(len(rows))
    return counts[0], counts[1]


#: A propagated mask this close to the truth (IoU) is accepted as it is; a worse one is redrawn.
ACCEPT_PROPAGATED_IOU = 0.85


def corrections_export_key(batch: str) -> str:
    """Where the correction round's Label Studio export lands (the drop folder, as the first round's)."""
    return layout.review_file(batch, f"label_studio/project-{batch}-propagated-export.json")


def simulate_corrections(
    store: DatasetStore, batch: str, seed: int = 0, taxonomy: Taxonomy | None = None
) -> SimulatedReview:
    """The second round: people open each propagated frame with its propagated masks as the
    prediction, accept the masks that are right, redraw the wrong ones, draw what is missing and
    delete what is not there; one Label Studio export, one annotator per episode."""
    taxonomy = taxonomy or load_taxonomy()
    rng = np.random.default_rng([seed, 777])
    captures = store.read_parquet(layout.captures_key(batch)).set_index("image_id")
    truth = store.read_parquet(layout.ground_truth_key(batch))
    propagated = store.read_parquet(layout.propagated_key(batch))
    truth_by_image = dict(tuple(truth.groupby("image_id", sort=False)))
    people = [a for a in ANNOTATORS if a.tool == "label_studio"]
    episodes = sorted(set(propagated.episode_id))
    clock = {s.annotator_id: datetime(2026, 11, 26, 9, 0, tzinfo=UTC) for s in people}
    tasks, n_masks = [], 0
    for number, (image_id, rows) in enumerate(propagated.groupby("image_id", sort=True)):
        capture = captures.loc[image_id]
        skill = people[episodes.index(rows.episode_id.iloc[0]) % len(people)]
        gts = truth_by_image.get(image_id, truth.iloc[:0])
        instances: list[dict] = []
        seconds, used = 0.0, set[str]()
        for gt in gts.itertuples():
            gt_mask = decode_mask(gt.rle, gt.height, gt.width)
            candidates = rows[(rows.class_id == gt.class_id) & ~rows.premask_id.isin(used)]
            best, best_iou = None, 0.0
            if len(candidates):
                ious = rle_iou(gt.rle, list(candidates.rle), gt.height, gt.width)
                k = int(np.argmax(ious))
                best, best_iou = candidates.iloc[k], float(ious[k])
            if best is not None and best_iou >= ACCEPT_PROPAGATED_IOU:
                used.add(best.premask_id)
                instances.append(
                    {
                        "class_name": gt.class_name,
                        "mask": decode_mask(best.rle, best.height, best.width),
                        "z_order": len(instances),
                        "premask_id": best.premask_id,
                        "accepted": True,
                    }
                )
                seconds += skill.seconds_per_mask * 0.1 * rng.lognormal(0, 0.2)
            else:
                premask_id = None
                if best is not None and best_iou >= 0.3:
                    used.add(best.premask_id)
                    premask_id = best.premask_id
                instances.append(
                    {
                        "class_name": gt.class_name,
                        "mask": _jitter(gt_mask, rng, skill.jitter_px, uneven=gt.area >= 3000),
                        "z_order": len(instances),
                        "premask_id": premask_id,
                        "accepted": False,
                    }
                )
                seconds += skill.seconds_per_mask * (0.7 if premask_id else 1.0) * rng.lognormal(0, 0.3)
        clock[skill.annotator_id] += timedelta(seconds=seconds + 3)
        n_masks += len(instances)
        tasks.append(
            {
                "id": 100_000 + number,
                "data": {"image": f"/data/local-files/?d={capture.uri}", "image_id": image_id},
                "annotations": [
                    _ls_annotation(
                        skill, instances, seconds, clock[skill.annotator_id], 500_000 + number, capture
                    )
                ],
                "predictions": [],
            }
        )
    key = corrections_export_key(batch)
    store.put_upload(key, json.dumps(tasks).encode())
    return SimulatedReview([key], len(tasks), 0, n_masks)


__all__ = [
    "ANNOTATORS",
    "SimulatedReview",
    "corrections_export_key",
    "simulate_corrections",
    "simulate_qc_verdicts",
    "simulate_review",
]

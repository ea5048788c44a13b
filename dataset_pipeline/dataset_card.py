"""dataset_card: a Datasheets-for-Datasets card, statistics and provenance tables for a release.

The card (``DATASHEET.md``) follows Gebru et al.'s sections - motivation, composition,
collection, annotation, quality, uses and limitations, licence - and quotes the pipeline's
own measurements (agreement per class, QC pass rates, baseline and zero-shot mIoU) rather
than prose. Provenance is one row per released image and one per released instance, as CSV
and Parquet, so a buyer can filter (e.g. drop ``assistance == "auto"`` labels).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dataset_pipeline import layout, schemas
from dataset_pipeline.annotation_guideline import read_revisions
from dataset_pipeline.dataset_release import complete_release, release_folder
from dataset_pipeline.figures import png_bytes
from dataset_pipeline.formats.release_content import ReleaseContent
from dataset_pipeline.masks import rle_areas
from dataset_pipeline.store import DatasetStore


@dataclass
class CardInputs:
    """What the card quotes besides the release itself (each may be missing: the card says so)."""

    release_info: dict
    all_annotations: pd.DataFrame  # every annotator's instances (cost, QC overhead)
    agreement_per_class: pd.DataFrame | None = None
    quality_issues: pd.DataFrame | None = None
    quality_checked: dict[str, int] = field(default_factory=dict)
    baseline: dict | None = None
    zero_shot: dict | None = None
    hourly_rate: float = 0.0
    currency: str = "USD"
    #: batch -> ``frames/<batch>/source.json`` of the released batches that came from a robot dataset
    robot_sources: dict[str, dict] = field(default_factory=dict)
    #: every annotation guideline revision (``guidelines/revisions.json``), oldest first
    guideline_revisions: list[dict] = field(default_factory=list)
    agreement_per_revision: pd.DataFrame | None = None
    #: every batch's QC samples (tables/qc/), their tiers and statuses
    qc_assignments: pd.DataFrame | None = None


def image_provenance(content: ReleaseContent) -> pd.DataFrame:
    """One row per released image: where, when and how it was captured, and its file in the release."""
    frame = content.images.assign(file=[content.image_file(r) for r in content.iter_rows()])
    return frame.reindex(columns=list(schemas.IMAGE_PROVENANCE.columns)).reset_index(drop=True)


def annotation_provenance(content: ReleaseContent) -> pd.DataFrame:
    """One row per released instance: who made it, when, with which tool and help, how it was reviewed."""
    names = dict(enumerate(content.taxonomy.names))
    frame = content.annotations.merge(content.images[["image_id", "split"]], on="image_id", how="left")
    frame["class_name"] = frame.class_id.map(names)
    frame["area_px"] = rle_areas(frame.height, frame.width, frame.rle) if len(frame) else []
    return frame.reindex(columns=list(schemas.ANNOTATION_PROVENANCE.columns)).reset_index(drop=True)


def statistics(content: ReleaseContent, annotations: pd.DataFrame) -> dict:
    """Counts a buyer checks first: images, instances per class, areas, scenes, lighting, cameras."""
    images = content.images
    per_class = {c.name: int((annotations.class_id == c.id).sum()) for c in content.taxonomy.foreground}
    areas = annotations.area_px.to_numpy(np.float64) if len(annotations) else np.zeros(0)
    return {
        "images": len(images),
        "images_per_split": images.split.value_counts()
        .reindex(content.splits)
        .fillna(0)
        .astype(int)
        .to_dict(),
        "instances": len(annotations),
        "instances_per_class": per_class,
        "mean_instances_per_image": round(len(annotations) / len(images), 2) if len(images) else 0.0,
        "mask_area_px": {
            q: float(np.percentile(areas, p)) if len(areas) else None
            for q, p in (("p5", 5), ("median", 50), ("p95", 95))
        },
        "scenes": int(images.scene_id.nunique()),
        "episodes": int(images.episode_id.nunique()),
        "images_per_lighting": images.lighting.value_counts().sort_index().to_dict(),
        "images_per_camera": images.camera_model.value_counts().sort_index().to_dict(),
        "capture_dates": [
            str(pd.to_datetime(images.capture_ts).min().date()),
            str(pd.to_datetime(images.capture_ts).max().date()),
        ]
        if len(images)
        else [],
    }


def area_histogram(annotations: pd.DataFrame, bins: int = 12) -> np.ndarray:
    """Mask-area distribution (log-spaced bins of pixel counts) as an RGB bar chart: each bar is the
    bin's share of all masks, written as a percentage with its count."""
    from dataset_pipeline.figures import bar_chart

    shares, counts, labels = area_bins(annotations, bins)
    return bar_chart(
        labels,
        list(shares),
        title=f"mask areas: share of all {int(counts.sum()):,} masks per area bin",
        value_format="{:.1%}",
        notes=[f"({n:,})" for n in counts],
    )


def area_bins(annotations: pd.DataFrame, bins: int = 12) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(share of all masks, count, label) per log-spaced bin of mask area in pixels.

    >>> shares, counts, labels = area_bins(pd.DataFrame({"area_px": [10, 20, 1000, 1200]}), bins=2)
    >>> shares.tolist(), counts.tolist(), labels
    ([0.5, 0.5], [2, 2], ['10-110 px', '110-1,201 px'])
    """
    areas = annotations.area_px.to_numpy(np.float64) if len(annotations) else np.ones(1)
    edges = np.unique(np.geomspace(max(1.0, areas.min()), max(2.0, areas.max() + 1), bins + 1).round())
    counts, edges = np.histogram(areas, bins=edges)
    labels = [f"{int(a):,}-{int(b):,} px" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return counts / max(1, counts.sum()), counts, labels


def cost_breakdown(all_annotations: pd.DataFrame, released: pd.DataFrame, hourly_rate: float) -> dict:
    """Labour hours from ``seconds_spent``; QC overhead = time on labels that are not released
    (the second and third annotations of gold images, which buy the agreement figures)."""
    seconds = (
        all_annotations.seconds_spent.fillna(0).astype(float)
        if len(all_annotations)
        else pd.Series([], dtype=float)
    )
    total_hours = float(seconds.sum()) / 3600
    released_ids = set(released.annotation_id)
    qc_hours = (
        float(seconds[~all_annotations.annotation_id.isin(released_ids)].sum()) / 3600
        if len(seconds)
        else 0.0
    )
    by_assistance = (
        all_annotations.assign(hours=seconds / 3600).groupby("assistance").hours.sum().round(2).to_dict()
        if len(all_annotations)
        else {}
    )
    by_annotator = (
        all_annotations.assign(hours=seconds / 3600).groupby("annotator_id").hours.sum().round(2).to_dict()
        if len(all_annotations)
        else {}
    )
    propagation = propagation_savings(released)
    return {
        "labour_hours": round(total_hours, 2),
        "hourly_rate": hourly_rate,
        "propagation": propagation | {"saved_cost": round(propagation["saved_hours"] * hourly_rate, 2)},
        "labour_cost": round(total_hours * hourly_rate, 2),
        "qc_overhead_hours": round(qc_hours, 2),
        "qc_overhead_share": round(qc_hours / total_hours, 4) if total_hours else 0.0,
        "hours_by_assistance": by_assistance,
        "hours_by_annotator": by_annotator,
    }


def _propagation_line(saved: dict, currency: str) -> str:
    if not saved["propagated_frames"] and not saved["corrected_frames"]:
        return "- Episode propagation: every released frame was labelled by hand."
    return (
        f"- Episode propagation: {saved['hand_frames']} frames labelled by hand, {saved['propagated_frames']} "
        f"propagated from keyframes and accepted, {saved['corrected_frames']} propagated and corrected (a frame "
        f"with any corrected mask; of the propagated masks {saved['propagated_masks_accepted']} were accepted, "
        f"{saved['propagated_masks_corrected']} corrected); at "
        f"{saved['hand_seconds_per_frame']} s per hand-labelled frame (median) that saved {saved['saved_hours']} h"
        + (f" = {saved['saved_cost']} {currency}." if saved.get("saved_cost") else ".")
    )


def propagation_savings(released: pd.DataFrame) -> dict:
    """Frames labelled by hand, propagated and accepted, propagated and corrected; and the hours
    propagation saved: each propagated frame at the median time of a hand-labelled frame, less the
    time people spent checking or correcting it.

    >>> table = pd.DataFrame({"image_id": ["b/1", "b/2", "b/3"], "seconds_spent": [120.0, 12.0, 60.0],
    ...                       "assistance": ["manual", "propagated", "propagated-corrected"]})
    >>> propagation_savings(table)
    {'propagated_masks_accepted': 1, 'propagated_masks_corrected': 1, 'hand_frames': 1, 'propagated_frames': 1, 'corrected_frames': 1, 'hand_seconds_per_frame': 120.0, 'saved_hours': 0.05}
    """
    from dataset_pipeline.annotation_corpus import frame_origins

    empty = {
        "propagated_masks_accepted": 0,
        "propagated_masks_corrected": 0,
        "hand_frames": 0,
        "propagated_frames": 0,
        "corrected_frames": 0,
        "hand_seconds_per_frame": 0.0,
    }
    if not len(released):
        return empty | {"saved_hours": 0.0}
    origins = frame_origins(released)
    seconds = released.seconds_spent.fillna(0).astype(float).groupby(released.image_id).sum()
    hand = seconds[origins[origins == "hand"].index]
    per_frame = float(hand.median()) if len(hand) else 0.0
    carried = seconds[origins[origins != "hand"].index]
    saved = float((per_frame - carried).clip(lower=0).sum()) / 3600
    return {
        "propagated_masks_accepted": int((released.assistance == "propagated").sum()),
        "propagated_masks_corrected": int((released.assistance == "propagated-corrected").sum()),
        "hand_frames": int((origins == "hand").sum()),
        "propagated_frames": int((origins == "propagated").sum()),
        "corrected_frames": int((origins == "corrected").sum()),
        "hand_seconds_per_frame": round(per_frame, 1),
        "saved_hours": round(saved, 2),
    }


def _table(frame: pd.DataFrame) -> str:
    if frame is None or not len(frame):
        return "_not available_\n"
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = [
        "| " + " | ".join("" if pd.isna(v) else str(v) for v in row) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body]) + "\n"


def guideline_lines(
    annotations: pd.DataFrame, revisions: list[dict], per_revision: pd.DataFrame | None
) -> list[str]:
    """The guideline revisions the released labels were made under, and agreement per revision."""
    if not revisions:
        return ["- Annotation guideline: no revision recorded.", ""]
    counts = (
        annotations.guideline_revision.value_counts(dropna=False).to_dict()
        if "guideline_revision" in annotations
        else {}
    )
    used = []
    for r in revisions:
        n = int(counts.get(r["revision"], 0))
        if n:
            used.append(
                f"r{r['revision']} (effective {r['effective_from'][:16]}, {n} labels; changed: {'; '.join(r['changes'])})"
            )
    untraced = sum(int(v) for k, v in counts.items() if pd.isna(k))
    lines = [
        f"- Annotation guideline revisions in force: {', '.join(used) or 'none of the released labels is traced'}"
        + (f"; {untraced} labels made before the first revision or untimed" if untraced else "")
        + f". Every revision is archived under `{layout.GUIDELINES}/` (latest r{revisions[-1]['revision']}).",
        "",
    ]
    if per_revision is not None and len(per_revision):
        lines += [
            "#### Agreement per class and guideline revision (pairs who both worked under it)",
            _table(per_revision.drop(columns=["class_id"])),
        ]
    return lines


def qc_tier_lines(assignments: pd.DataFrame | None) -> list[str]:
    """Peer review's first-pass acceptance and the expert audit's pass rate, with the samples' state."""
    if assignments is None or not len(assignments):
        return ["- QC sampling: no peer-review or audit samples recorded.", ""]
    lines = []
    for tier, label in (("peer_review", "Peer review"), ("expert_audit", "Expert audit")):
        mine = assignments[assignments.tier == tier]
        done = mine[mine.status != "pending"]
        rate = f"{(done.status == 'accepted').mean():.1%}" if len(done) else "n/a"
        lines.append(
            f"- {label}: {len(mine)} sampled images, {len(done)} verdicts back, "
            f"{'first-pass acceptance' if tier == 'peer_review' else 'audit pass rate'} {rate}"
            f"{f', {len(mine) - len(done)} pending' if len(mine) > len(done) else ''}."
        )
    return lines + [""]


def render_card(content: ReleaseContent, version: str, inputs: CardInputs, stats: dict, cost: dict) -> str:
    """The DATASHEET.md text."""
    info, taxonomy = inputs.release_info, content.taxonomy
    assistance = content.annotations.assistance.value_counts(normalize=True).round(3).to_dict()
    review = content.annotations.review_status.value_counts(normalize=True).round(3).to_dict()
    expert_share = (
        float((content.annotations.review_status == "expert_approved").mean())
        if len(content.annotations)
        else 0.0
    )
    tools = sorted(
        {
            f"{t} {v}" if isinstance(v, str) and v else str(t)
            for t, v in zip(content.annotations.tool, content.annotations.tool_version, strict=True)
        }
    )
    classes = pd.DataFrame(
        [
            {
                "id": c.id,
                "name": c.name,
                "category": c.category,
                "colour": c.colour,
                "agreement threshold": c.agreement_threshold,
                "instances": stats["instances_per_class"].get(c.name, "-"),
                "definition": c.definition,
            }
            for c in taxonomy.classes
        ]
    )
    agreement = inputs.agreement_per_class
    if agreement is not None and len(agreement):
        agreement = agreement[
            ["class", "mean_pairwise_iou", "boundary_iou", "threshold", "passed", "instances", "pairs"]
        ]
    below = [] if agreement is None else list(agreement[~agreement.passed.astype(bool)]["class"])
    qc_rows = []
    for check, checked in inputs.quality_checked.items():
        failed = int((inputs.quality_issues.check == check).sum()) if inputs.quality_issues is not None else 0
        qc_rows.append(
            {
                "check": check,
                "checked": checked,
                "failed": failed,
                "pass rate": round(1 - failed / checked, 4) if checked else 1.0,
            }
        )
    thin = [c.name for c in taxonomy.foreground if c.category == "thin"]
    boundary = agreement.dropna(subset=["boundary_iou"]) if agreement is not None and len(agreement) else None
    weakest_boundary = (
        boundary.sort_values("boundary_iou").iloc[0] if boundary is not None and len(boundary) else None
    )
    baseline, zero_shot = inputs.baseline or {}, inputs.zero_shot or {}
    per_class_baseline = pd.DataFrame(
        [
            {"class": k, "baseline IoU": v, "zero-shot IoU": (zero_shot.get("per_class_iou") or {}).get(k)}
            for k, v in (baseline.get("per_class_iou") or {}).items()
        ]
    )
    lines = [
        f"# {info.get('name') or taxonomy.name} — release {version}",
        "",
        f"{info.get('description', '')}",
        "",
        "## Motivation",
        f"- Purpose: {(info.get('purpose') or 'semantic segmentation for robot manipulation').rstrip('.')}.",
        f"- Created by: {info.get('contributor') or 'not stated'}; contact: {info.get('url') or 'not stated'}.",
        "",
        "## Composition",
        f"- {stats['images']} images ({', '.join(f'{k} {v}' for k, v in stats['images_per_split'].items())}), "
        f"{stats['instances']} instances, {stats['mean_instances_per_image']} per image on average.",
        f"- {stats['scenes']} scenes, {stats['episodes']} episodes; lighting: "
        f"{', '.join(f'{k} {v}' for k, v in stats['images_per_lighting'].items())}.",
        f"- Viewpoints / cameras: {', '.join(f'{k} {v}' for k, v in stats['images_per_camera'].items())}.",
        f"- Mask area (pixels): p5 {stats['mask_area_px']['p5']}, median {stats['mask_area_px']['median']}, "
        f"p95 {stats['mask_area_px']['p95']} (histogram: `{layout.MASK_AREA_HISTOGRAM_FILE}`).",
        "- Splits are grouped: no scene, episode or near-duplicate image is in two splits.",
        "",
        "### Taxonomy " + f"`{taxonomy.tag}` (background = 0, classes 1..{len(taxonomy.classes) - 1})",
        _table(classes),
        "## Collection",
        f"- Captured {' to '.join(stats['capture_dates'])} by robot-mounted cameras "
        f"({', '.join(stats['images_per_camera'])}); per-image timestamp, camera, scene, episode, lighting and "
        f"post-processing are in `{layout.provenance_file('images', 'csv')}` / `.parquet`.",
        "",
        *_robot_source_lines(inputs.robot_sources),
        "## Annotation",
        f"- Tools: {', '.join(tools) or 'not recorded'}. Pre-masks by SAM 2 or the classical fallback "
        "(the backend is recorded per pre-mask); people reviewed and corrected them.",
        f"- Assistance of released labels: {assistance}.",
        f"- Review status of released labels: {review}; expert-audited share {expert_share:.1%}.",
        "- Gold images are labelled independently by two or more annotators; the released label of an image is "
        "one annotator's (expert-approved first, then accepted peer review, then the best agreement with consensus).",
        "- Per-annotation provenance (annotator, time, tool version, assistance, review status, guideline revision): "
        f"`{layout.provenance_file('annotations', 'csv')}` / `.parquet`.",
        *guideline_lines(content.annotations, inputs.guideline_revisions, inputs.agreement_per_revision),
        *qc_tier_lines(inputs.qc_assignments),
        "## Quality",
        "### Agreement per class (gold images, mean pairwise IoU)",
        _table(agreement if agreement is not None else pd.DataFrame()),
        "### QC checks (blocking in the pipeline)",
        _table(pd.DataFrame(qc_rows)),
        "## Baseline and zero-shot comparison",
        f"- Baseline: {baseline.get('config', {}).get('architecture', '?')} / {baseline.get('config', {}).get('encoder', '?')}, "
        f"test mIoU **{baseline.get('miou', 'n/a')}**, pixel accuracy {baseline.get('pixel_accuracy', 'n/a')}, "
        f"{baseline.get('latency_ms_per_image', 'n/a')} ms/image on {baseline.get('device', '?')}, "
        f"{baseline.get('config', {}).get('image_size', '?')} px, {baseline.get('config', {}).get('epochs', '?')} epochs, "
        f"encoder weights: {baseline.get('config', {}).get('encoder_weights_path') or 'random initialisation'}.",
        f"- Zero-shot ({zero_shot.get('backend', 'n/a')}, oracle class labels - favours zero-shot): mIoU "
        f"{zero_shot.get('zero_shot_miou', 'n/a')}; annotation value {zero_shot.get('annotation_value_points', 'n/a')} points.",
        _table(per_class_baseline),
        "## Known limitations",
        f"- Classes below their agreement threshold: {', '.join(below) or 'none'}.",
        (
            f"- Lowest boundary agreement: {weakest_boundary['class']} (Boundary IoU {weakest_boundary.boundary_iou}); "
            if weakest_boundary is not None
            else "- Boundary agreement not measured (no gold images); "
        )
        + f"thin classes ({', '.join(thin) or 'none'}) are the hardest to outline consistently. Transparent and "
        "reflective objects are not modelled as classes of their own.",
        "- The baseline is a smoke test of trainability at reduced size, not a tuned model.",
        "",
        "## Cost",
        f"- Labour: {cost['labour_hours']} h"
        + (
            f" at {cost['hourly_rate']} {inputs.currency}/h = {cost['labour_cost']} {inputs.currency}"
            if cost["hourly_rate"]
            else " (no hourly rate configured: set ReleaseSettings.hourly_rate)"
        )
        + f"; QC overhead (gold duplicates) {cost['qc_overhead_hours']} h "
        f"= {cost['qc_overhead_share']:.1%} of labour.",
        f"- Hours by assistance: {cost['hours_by_assistance']}; by annotator: {cost['hours_by_annotator']}.",
        _propagation_line(cost["propagation"], inputs.currency),
        "",
        "## Licence",
        f"- Licence: {info.get('license') or 'not stated'} {info.get('license_url') or ''}".rstrip(),
        f"- Model-training grant: **{info.get('model_training_grant') or 'not stated'}**.",
        "",
        "## Files",
        "COCO (`annotations/`), YOLO-seg (`labels/`, `data.yaml`), PNG masks (`masks/`), HDF5 (`hdf5/`), "
        "LeRobot (`lerobot/<split>/`, a dataset per split), episode HDF5 (`episodes/`), RLDS (`rlds/`) and the robot datasets written back "
        "(`robot_datasets/<batch>/`) as configured; `release.json` lists every file with its SHA-256.",
        "",
    ]
    return "\n".join(lines)


def _robot_source_lines(sources: dict[str, dict]) -> list[str]:
    """What the card says of the robot datasets the frames were sampled from."""
    lines = []
    for batch, source in sorted(sources.items()):
        settings = source.get("settings") or {}
        every, fps = settings.get("every"), settings.get("fps")
        sampling = (
            "every frame" if every == 1 else f"1 frame in {every}" if every
            else f"{fps} frames/s" if fps else "the default sampling"
        )  # fmt: skip
        quarantined = source.get("quarantined_episodes") or {}
        lines.append(
            f"- Batch `{batch}`: frames sampled ({sampling}) from a {source.get('kind')} {source.get('version')} "
            f"dataset (robot {source.get('robot_type') or 'not given'}, {source.get('fps') or 'no'} fps, "
            f"{source.get('episodes')} episodes, {source.get('frames')} frames, cameras "
            f"{', '.join(source.get('cameras') or [])}; tasks: {'; '.join(source.get('tasks') or []) or 'none'})"
            + (f"; {len(quarantined)} episode(s) quarantined" if quarantined else "")
            + f". Its masks are written back into a copy of it: `robot_datasets/{batch}/`; its provenance is in "
            f"`{layout.provenance_file('robot_datasets', 'json')}`."
        )
    return [*lines, ""] if lines else []


def card_inputs(
    store: DatasetStore, content: ReleaseContent, hourly_rate: float, currency: str
) -> CardInputs:
    """What the card quotes, read from the store's reports (each may be missing)."""
    issues = (
        store.read_parquet(layout.QUALITY_ISSUES_KEY) if store.exists(layout.QUALITY_ISSUES_KEY) else None
    )
    summary = (
        json.loads(store.read_bytes(layout.QUALITY_SUMMARY_KEY))
        if store.exists(layout.QUALITY_SUMMARY_KEY)
        else {}
    )
    quoted = {
        name: json.loads(store.read_bytes(key))
        for name, key in (("baseline", layout.BASELINE_LATEST_KEY), ("zero_shot", layout.ZERO_SHOT_KEY))
        if store.exists(key)
    }
    return CardInputs(
        release_info=content.info,
        all_annotations=store.read_parquet(layout.CORPUS_ANNOTATIONS_KEY),
        agreement_per_class=store.read_parquet(layout.AGREEMENT_TABLES["per_class"]),
        quality_issues=issues,
        quality_checked=summary.get("checked", {}),
        baseline=quoted.get("baseline"),
        zero_shot=quoted.get("zero_shot"),
        hourly_rate=hourly_rate,
        currency=currency,
        guideline_revisions=read_revisions(store),
        agreement_per_revision=store.read_parquet(layout.AGREEMENT_TABLES["per_revision"])
        if store.exists(layout.AGREEMENT_TABLES["per_revision"])
        else None,
        qc_assignments=_qc_assignments(store),
        robot_sources={
            str(batch): json.loads(store.read_bytes(layout.frames_source_key(str(batch))))
            for batch in sorted(set(content.images.batch))
            if layout.is_batch_name(batch) and store.exists(layout.frames_source_key(str(batch)))
        },
    )


def _qc_assignments(store: DatasetStore) -> pd.DataFrame | None:
    keys = layout.batch_tables(store.list(layout.QC_PREFIX))
    return pd.concat([store.read_parquet(k) for k in keys], ignore_index=True) if keys else None


@dataclass
class Card:
    """What :func:`write_card` wrote into the release."""

    text: str
    histogram: bytes
    cost: dict
    files: int  # files listed in release.json


def write_card(
    store: DatasetStore,
    content: ReleaseContent,
    version: str,
    inputs: CardInputs,
    completed_at: str,
) -> Card:
    """Write the datasheet, statistics and provenance into ``releases/<version>/``, then
    ``release.json``, which makes the release complete (and ``releases/latest.json``)."""
    out = release_folder(store, version)
    images = image_provenance(content)
    annotations = annotation_provenance(content)
    stats = statistics(content, annotations)
    cost = cost_breakdown(inputs.all_annotations, content.annotations, inputs.hourly_rate)
    text = render_card(content, version, inputs, stats, cost)
    histogram = png_bytes(area_histogram(annotations))
    for name, frame in (("images", images), ("annotations", annotations)):
        out.write_parquet(layout.provenance_file(name, "parquet"), frame)
        out.write_text(layout.provenance_file(name, "csv"), frame.to_csv(index=False))
    if inputs.robot_sources:  # the robot datasets the frames were sampled from, as ingest recorded them
        out.write_text(
            layout.provenance_file("robot_datasets", "json"),
            json.dumps(inputs.robot_sources, indent=2, default=str),
        )
    out.write_bytes(layout.MASK_AREA_HISTOGRAM_FILE, histogram)
    out.write_text(layout.STATISTICS_FILE, json.dumps(stats | {"cost": cost}, indent=2, default=str))
    out.write_text(layout.DATASHEET_FILE, text)
    manifest = complete_release(
        store,
        version,
        {"images": stats["images"], "instances": stats["instances"]},
        completed_at=completed_at,
        splits=content.images[["image_id", "split"]],
    )
    return Card(text, histogram, cost, len(manifest["files"]))

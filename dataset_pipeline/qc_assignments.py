"""qc_assignments: the second and third tiers of quality control, as samples people work through.

Tier 1 is the real-time checks (the importers' and quality_report's). For each batch:

* **peer review**: ``peer_share`` (12%) of the images one annotator labelled, stratified by
  annotator and by the image's main class (largest remainder, so every stratum gets its share
  and the total is the share of the batch), each given to a peer of the same batch in turn;
* **expert audit**: ``audit_share`` (5%) of the images labelled in each ISO week, stratified by
  annotator, for the team's auditors in turn.

A sample, once drawn, stays: a re-run keeps every earlier assignment and only tops the strata up
as new images arrive (each image's rank is a hash of the batch, tier and image, so no random
state is kept). The assignments are written as the tools take them - a sheet per tier with the
verdict file's own columns (fill in ``accepted`` and drop it into ``reviews/<batch>/``), Label
Studio saved filters (Data Manager views), a CVAT job list - and each one is tracked (pending /
accepted / rejected) until its verdict comes back in the imported annotations. The verdicts make
first-pass acceptance per annotator and per batch, and the audit pass rate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from dataset_pipeline import layout, schemas
from dataset_pipeline.annotation_tasks import stable_rank
from dataset_pipeline.formats.label_studio.tasks import saved_filter
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.verdicts import Verdict

PEER_REVIEW_SHARE = 0.12
EXPERT_AUDIT_SHARE = 0.05
#: A batch is flagged under this first-pass acceptance (peer verdicts) ...
BATCH_ACCEPTANCE_FLAG = 0.80
#: ... or over this many times the team's median annotation time per image.
BATCH_SLOWNESS_FLAG = 2.0


@dataclass(frozen=True)
class QcSettings:
    peer_share: float = PEER_REVIEW_SHARE
    audit_share: float = EXPERT_AUDIT_SHARE
    auditors: tuple[str, ...] = ()  # the experts, in turn; empty = any expert
    min_acceptance: float = BATCH_ACCEPTANCE_FLAG
    max_time_ratio: float = BATCH_SLOWNESS_FLAG


def image_work(annotations: pd.DataFrame) -> pd.DataFrame:
    """One row per image and annotator: when the work was made, its seconds, its main class (most
    instances; ties: lowest id), and the verdicts it has."""
    columns = [
        "image_id",
        "annotator_id",
        "created_at",
        "seconds",
        "main_class",
        "peer",
        "audit",
        "annotators",
    ]
    if not len(annotations):
        return pd.DataFrame(columns=columns)
    table = annotations.assign(
        created_at=pd.to_datetime(annotations.created_at, utc=True, errors="coerce", format="ISO8601")
    )
    grouped = table.groupby(["image_id", "annotator_id"], sort=True)
    main = (
        table.groupby(["image_id", "annotator_id", "class_id"])
        .size()
        .rename("n")
        .reset_index()
        .sort_values(["image_id", "annotator_id", "n", "class_id"], ascending=[True, True, False, True])
        .drop_duplicates(["image_id", "annotator_id"])
        .set_index(["image_id", "annotator_id"])
        .class_id
    )
    work = pd.DataFrame(
        {
            "created_at": grouped.created_at.min(),
            "seconds": grouped.seconds_spent.sum(min_count=1),
            "main_class": main,
            "peer": grouped.review_accepted.first(),
            "audit": grouped.audit_accepted.first() if "audit_accepted" in table else pd.NA,
        }
    ).reset_index()
    work["annotators"] = work.groupby("image_id").annotator_id.transform("nunique")
    return work[columns]


def allocate(sizes: dict[str, int], total: int) -> dict[str, int]:
    """``total`` split across strata in proportion to their sizes (largest remainder; ties by name).

    >>> allocate({"a": 10, "b": 5, "c": 1}, 3)
    {'a': 2, 'b': 1, 'c': 0}
    """
    whole = sum(sizes.values())
    if whole == 0 or total <= 0:
        return dict.fromkeys(sizes, 0)
    exact = {k: total * v / whole for k, v in sizes.items()}
    quota = {k: int(np.floor(v)) for k, v in exact.items()}
    left = total - sum(quota.values())
    for k in sorted(exact, key=lambda k: (-(exact[k] - quota[k]), k))[:left]:
        quota[k] += 1
    return quota


def _draw(
    units: pd.DataFrame, pool_of: pd.Series, stratum_of: pd.Series, share: float, taken: set, salt: str
) -> list[int]:
    """Row positions of ``units`` to add: per pool, its share (at least one), spread over its strata,
    counting what ``taken`` (unit keys already assigned) holds."""
    chosen: list[int] = []
    keys = list(zip(units.image_id, units.annotator_id, strict=True))
    for pool in sorted(pool_of.unique()):
        in_pool = np.flatnonzero((pool_of == pool).to_numpy())
        target = max(1, int(round(share * len(in_pool))))
        strata = stratum_of.iloc[in_pool]
        quota = allocate(strata.value_counts().to_dict(), target)
        for stratum, wanted in sorted(quota.items()):
            members = [int(i) for i in in_pool[(strata == stratum).to_numpy()]]
            have = sum(keys[i] in taken for i in members)
            free = sorted(
                (i for i in members if keys[i] not in taken), key=lambda i: stable_rank(salt, *keys[i])
            )
            chosen += free[: max(0, wanted - have)]
    return chosen


def build_assignments(
    annotations: pd.DataFrame,
    captures: pd.DataFrame,
    batch: str,
    settings: QcSettings,
    previous: pd.DataFrame | None,
    now: datetime,
) -> pd.DataFrame:
    """The batch's samples: the earlier ones kept, topped up, each with its verdict's status now."""
    work = image_work(annotations)
    files = dict(
        zip(captures.image_id, (layout.upload_relative(batch, u) for u in captures.uri), strict=True)
    )
    previous = previous if previous is not None and len(previous) else schemas.QC_ASSIGNMENTS.frame()
    rows = [r._asdict() for r in previous.drop(columns=["status"]).itertuples(index=False)]
    people = sorted(work.annotator_id.unique())
    week = work.created_at.dt.strftime("%G-W%V").fillna("unknown")

    def add(tier: str, units: pd.DataFrame, pool: pd.Series, stratum: pd.Series, share: float) -> None:
        taken = {(r["image_id"], r["annotator_id"]) for r in rows if r["tier"] == tier}
        for i in _draw(units, pool, stratum, share, taken, f"{batch}/{tier}"):
            unit = units.iloc[i]
            if tier == "peer_review":
                others = [p for p in people if p != unit.annotator_id]
                reviewer = others[stable_rank(batch, unit.image_id) % len(others)] if others else ""
            else:
                auditors = list(settings.auditors)
                reviewer = auditors[stable_rank(batch, unit.image_id) % len(auditors)] if auditors else ""
            rows.append(
                {
                    "image_id": unit.image_id,
                    "image_file": files.get(unit.image_id, unit.image_id),
                    "tier": tier,
                    "annotator_id": unit.annotator_id,
                    "reviewer_id": reviewer,
                    "stratum": stratum.iloc[i],
                    "week": week.loc[units.index[i]],
                    "assigned_at": pd.Timestamp(now),
                }
            )

    if len(work):
        single = work[work.annotators == 1]
        add(
            "peer_review",
            single,
            pd.Series("batch", index=single.index),
            single.annotator_id + " | class " + single.main_class.astype(str),
            settings.peer_share,
        )
        add("expert_audit", work, week, work.annotator_id, settings.audit_share)
    table = schemas.QC_ASSIGNMENTS.frame(rows)
    return with_status(table, work)


def with_status(assignments: pd.DataFrame, work: pd.DataFrame) -> pd.DataFrame:
    """Each assignment's verdict as it stands: pending until the imported annotations carry it."""
    verdicts = work.set_index(["image_id", "annotator_id"])[["peer", "audit"]] if len(work) else None
    status = []
    for row in assignments.itertuples():
        value = pd.NA
        if verdicts is not None and (row.image_id, row.annotator_id) in verdicts.index:
            value = verdicts.loc[
                (row.image_id, row.annotator_id), "peer" if row.tier == "peer_review" else "audit"
            ]
        status.append("pending" if pd.isna(value) else ("accepted" if bool(value) else "rejected"))
    return assignments.assign(status=status)


def assignment_files(
    assignments: pd.DataFrame, batch: str, task_ids: pd.DataFrame | None = None
) -> dict[str, bytes]:
    """The samples as the people and the tools take them, by store key (see :func:`layout.qc_task_files`).

    Label Studio: one saved filter (:func:`saved_filter`) per tier and reviewer. CVAT: one job per
    tier and reviewer with its assignee and frame names (a task of those frames, or a job of their
    range)."""
    keys = layout.qc_task_files(batch)
    ids = (
        dict(zip(task_ids.image_id, task_ids.task_id, strict=True))
        if task_ids is not None and len(task_ids)
        else {}
    )
    out: dict[str, bytes] = {}
    for tier, key in (("peer_review", "peer_review_sheet"), ("expert_audit", "expert_audit_sheet")):
        mine = assignments[assignments.tier == tier]
        sheet = schemas.PEER_REVIEW.frame(
            {
                "image_file": r.image_file,
                "annotator_id": r.annotator_id,
                "reviewer_id": r.reviewer_id,
                "accepted": {"accepted": "true", "rejected": "false"}.get(r.status, ""),
                "reviewed_at": "",
            }
            for r in mine.itertuples()
        )
        out[keys[key]] = sheet.to_csv(index=False).encode()
    views, jobs = [], []
    for (tier, reviewer), mine in assignments.groupby(["tier", "reviewer_id"], sort=True):
        who = reviewer or "any reviewer"
        title = f"QC {tier.replace('_', ' ')} {batch}: {who}"  # stable: a grown sample updates its tab
        views.append(saved_filter(title, mine.image_id, ids))
        jobs.append(
            {
                "name": f"qc-{tier}-{batch}-{reviewer or 'any'}",
                "tier": tier,
                "assignee": reviewer,
                "frames": sorted(mine.image_file),
                "annotators": sorted(mine.annotator_id.unique()),
            }
        )
    out[keys["label_studio_views"]] = json.dumps(views, indent=2).encode()
    out[keys["cvat_jobs"]] = json.dumps(jobs, indent=2).encode()
    return out


@dataclass
class BatchQuality:
    """A batch's QC figures: what the trend plots and the batch flags read."""

    figures: dict[str, float | int] = field(default_factory=dict)
    per_annotator: pd.DataFrame = field(default_factory=pd.DataFrame)


def seconds_per_image(annotations: pd.DataFrame) -> pd.Series:
    """Seconds of each timed (image, annotator) piece of work."""
    timed = annotations[annotations.seconds_spent.notna()]
    return timed.groupby(["image_id", "annotator_id"]).seconds_spent.sum()


def batch_quality(annotations: pd.DataFrame, assignments: pd.DataFrame, team_seconds: float) -> BatchQuality:
    """First-pass acceptance (peer verdicts), audit pass rate, time per image against the team's
    median (all batches), velocity; per annotator the same acceptance figures."""
    work = image_work(annotations)
    peer = work.peer.dropna().astype(bool)
    audit = work.audit.dropna().astype(bool)
    times = seconds_per_image(annotations)
    median = float(times.median()) if len(times) else float("nan")
    seconds = float(times.sum()) if len(times) else 0.0
    pending = assignments[assignments.status == "pending"] if len(assignments) else assignments
    figures: dict[str, float | int] = {
        "images": int(work.image_id.nunique()),
        "first_pass_acceptance": round(float(peer.mean()), 4) if len(peer) else float("nan"),
        "peer_verdicts": len(peer),
        "audit_pass_rate": round(float(audit.mean()), 4) if len(audit) else float("nan"),
        "audit_verdicts": len(audit),
        "peer_sample": int((assignments.tier == "peer_review").sum()) if len(assignments) else 0,
        "audit_sample": int((assignments.tier == "expert_audit").sum()) if len(assignments) else 0,
        "pending_verdicts": len(pending),
        "median_seconds_per_image": round(median, 1),
        "team_median_seconds_per_image": round(team_seconds, 1),
        "time_ratio": round(median / team_seconds, 2)
        if team_seconds and team_seconds == team_seconds
        else float("nan"),
        "images_per_hour": round(times.size / (seconds / 3600.0), 2) if seconds > 0 else float("nan"),
    }
    rows = []
    for annotator, mine in work.groupby("annotator_id"):
        p, a = mine.peer.dropna().astype(bool), mine.audit.dropna().astype(bool)
        rows.append(
            {
                "annotator_id": annotator,
                "images": len(mine),
                "peer_verdicts": len(p),
                "first_pass_acceptance": round(float(p.mean()), 4) if len(p) else np.nan,
                "audit_verdicts": len(a),
                "audit_pass_rate": round(float(a.mean()), 4) if len(a) else np.nan,
            }
        )
    return BatchQuality(figures, pd.DataFrame(rows))


def batch_flags_verdict(batch: str, quality: BatchQuality, settings: QcSettings) -> Verdict:
    """The batch is not flagged: first-pass acceptance at least ``min_acceptance`` (when verdicts
    came back) and median time per image at most ``max_time_ratio`` times the team's."""
    f = quality.figures
    reasons = []
    acceptance, ratio = f.get("first_pass_acceptance", np.nan), f.get("time_ratio", np.nan)
    if acceptance == acceptance and acceptance < settings.min_acceptance:
        reasons.append(
            f"first-pass acceptance {acceptance:.0%} < {settings.min_acceptance:.0%} ({f['peer_verdicts']} peer verdicts)"
        )
    if ratio == ratio and ratio > settings.max_time_ratio:
        reasons.append(
            f"median {f['median_seconds_per_image']:.0f} s per image = {ratio:.1f}x the team's "
            f"{f['team_median_seconds_per_image']:.0f} s (> {settings.max_time_ratio:g}x)"
        )
    waiting = f" ({f['pending_verdicts']} QC verdicts still pending)" if f.get("pending_verdicts") else ""
    summary = (
        f"batch {batch} flagged: " + "; ".join(reasons)
        if reasons
        else f"batch {batch} within norms: acceptance {acceptance if acceptance == acceptance else 'n/a'}, "
        f"time {ratio if ratio == ratio else 'n/a'}x the team median"
    ) + waiting
    return Verdict(
        passed=not reasons,
        summary=summary,
        figures={k: v for k, v in f.items() if isinstance(v, int | float)},
        tables={"per annotator": quality.per_annotator} if len(quality.per_annotator) else {},
        settings={"min_acceptance": settings.min_acceptance, "max_time_ratio": settings.max_time_ratio},
    )


def team_seconds_per_image(store: DatasetStore) -> float:
    """The team's median time per image and annotator, over every imported batch."""
    keys = layout.batch_tables(store.list(layout.ANNOTATIONS_PREFIX))
    times = [seconds_per_image(store.read_parquet(k)) for k in keys]
    times = [t for t in times if len(t)]
    return float(pd.concat(times).median()) if times else float("nan")


@dataclass
class BatchQc:
    """What :func:`update_batch_qc` wrote and measured."""

    assignments: pd.DataFrame
    quality: BatchQuality
    files: dict[str, str]  # role -> key
    views: list[dict] = field(default_factory=list)  # the Label Studio saved filters written


def update_batch_qc(store: DatasetStore, batch: str, settings: QcSettings, now: datetime) -> BatchQc:
    """Draw (or top up) the batch's samples, refresh their statuses from the imported verdicts,
    write the table and the files the people and tools take; measure the batch."""
    annotations = store.read_parquet(layout.annotations_key(batch))
    captures = store.read_parquet(layout.captures_key(batch))
    key = layout.qc_assignments_key(batch)
    previous = store.read_parquet(key) if store.exists(key) else None
    tasks_key = layout.label_studio_tasks_key(batch)
    task_ids = store.read_parquet(tasks_key) if store.exists(tasks_key) else None
    assignments = build_assignments(annotations, captures, batch, settings, previous, now)
    files = assignment_files(assignments, batch, task_ids)
    for file_key, data in files.items():
        store.write_bytes(file_key, data)
    store.write_parquet(key, assignments)
    quality = batch_quality(annotations, assignments, team_seconds_per_image(store))
    roles = layout.qc_task_files(batch)
    views = json.loads(files[roles["label_studio_views"]])
    return BatchQc(assignments, quality, {"assignments": key, **roles}, views)


def read_batch_quality(store: DatasetStore, batch: str) -> BatchQuality:
    """The batch's figures from what is stored (the flags check's input)."""
    annotations = store.read_parquet(layout.annotations_key(batch))
    assignments = store.read_parquet(layout.qc_assignments_key(batch))
    return batch_quality(annotations, assignments, team_seconds_per_image(store))

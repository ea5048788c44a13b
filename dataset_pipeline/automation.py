"""How runs start: the upload sensor, the per-batch job, and the launcher the CLI uses.

One of the two modules of dataset_pipeline/ that know Dagster (with definitions.py).
"""

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from dagster import (
    AssetKey,
    AssetSelection,
    DagsterInstance,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    PathMetadataValue,
    RunRequest,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    schedule,
    sensor,
)

from assets import CORPUS_ASSETS, PER_BATCH_ASSETS, REVIEW_ASSETS, capture_batches
from assets.tags import GPU_RUN_TAGS
from dataset_pipeline.captures import find_ready_batches
from dataset_pipeline.reviewed_annotations import EXPORT_SUFFIXES, PEER_REVIEW_FILE
from resources import DatasetStoreResource, LabelStudioResource, TaxonomyResource

capture_batch_job = define_asset_job(
    "capture_batch_job",
    selection=AssetSelection.assets(*PER_BATCH_ASSETS),
    partitions_def=capture_batches,
    tags=GPU_RUN_TAGS,
    description="Everything that runs for one upload batch, with its gating checks.",
)


review_job = define_asset_job(
    "review_job",
    selection=AssetSelection.assets(*REVIEW_ASSETS),
    partitions_def=capture_batches,
    description="Imports a batch's review exports (started by review_export_sensor).",
)

corpus_job = define_asset_job(
    "corpus_job",
    selection=AssetSelection.assets(*CORPUS_ASSETS),
    tags=GPU_RUN_TAGS,
    description="The whole-corpus stages: corpus, quality report and what follows.",
)


@sensor(
    job=capture_batch_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Starts capture_batch_job for each new batch under incoming/ once its manifest.csv exists.",
)
def capture_upload_sensor(
    context: SensorEvaluationContext, dataset_store: DatasetStoreResource
) -> SensorResult | SkipReason:
    """One run per batch, ever: the cursor lists the batches already requested (plus the
    run key, so an overlapping tick cannot launch a second run), and a batch that the
    CLI already materialized is registered without a new run."""
    store = dataset_store.get_store()
    ready = find_ready_batches(store)
    seen = set(json.loads(context.cursor)) if context.cursor else set()
    new = [b for b in ready if b not in seen]
    if not new:
        return SkipReason(f"no new batch under {store.url('incoming')} ({len(ready)} known)")
    known = set(context.instance.get_dynamic_partitions(capture_batches.name))
    done = context.instance.get_materialized_partitions(AssetKey("raw_captures"))
    to_add = [b for b in new if b not in known]
    requests = [
        RunRequest(partition_key=b, run_key=f"capture_batch:{b}", tags={"dataset_pipeline/batch": b})
        for b in new
        if b not in done
    ]
    context.log.info(f"new batches: {new}; runs requested for {[r.partition_key for r in requests]}")
    return SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[capture_batches.build_add_request(to_add)] if to_add else [],
        cursor=json.dumps(sorted(seen | set(new))),
    )


@sensor(
    job=review_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Starts review_job for a batch when an export file lands in (or changes in) reviews/<batch>/.",
)
def review_export_sensor(
    context: SensorEvaluationContext, dataset_store: DatasetStoreResource
) -> SensorResult | SkipReason:
    """The cursor holds each review file's signature (size and modification stamp); a new or
    changed file requests a run for its batch, keyed by the batch's set of signatures, so
    the same files never run twice, also across overlapping ticks or restarts."""
    store = dataset_store.get_store()
    files = {
        key: signature
        for key, signature in store.signatures("reviews").items()
        if key.lower().endswith(EXPORT_SUFFIXES) or key.endswith("/" + PEER_REVIEW_FILE)
    }
    seen = json.loads(context.cursor) if context.cursor else {}
    changed = sorted({key.split("/")[1] for key, signature in files.items() if seen.get(key) != signature})
    if not changed:
        return SkipReason(f"no new review export ({len(files)} known)")
    known = set(context.instance.get_dynamic_partitions(capture_batches.name))
    requests = []
    for batch in changed:
        if batch not in known:
            context.log.warning(f"reviews/{batch}/ has exports but no capture batch {batch!r}: ignored")
            continue
        batch_files = {k: v for k, v in files.items() if k.split("/")[1] == batch}
        digest = hashlib.sha1(json.dumps(batch_files, sort_keys=True).encode()).hexdigest()[:16]
        requests.append(
            RunRequest(
                partition_key=batch,
                run_key=f"review:{batch}:{digest}",
                tags={"dataset_pipeline/batch": batch},
            )
        )
    return SensorResult(run_requests=requests, cursor=json.dumps(files, sort_keys=True))


@sensor(
    job=review_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Polls the live Label Studio project and starts review_job for each batch whose annotations "
    "were completed, updated or deleted since the last tick (skips while the connector is disabled).",
)
def label_studio_review_sensor(
    context: SensorEvaluationContext, label_studio: LabelStudioResource, taxonomy: TaxonomyResource
) -> SensorResult | SkipReason:
    """The cursor holds each batch's signature (its annotated tasks' ids, annotation counts and
    update times); the run key is the batch plus its signature, so one state of the reviews is
    imported once, also when ticks overlap or the daemon restarts. reviewed_annotations then pulls a
    snapshot export (full predictions) itself."""
    from dataset_pipeline.label_studio_connector import project_title, review_signatures

    if not label_studio.enabled:
        return SkipReason("the Label Studio connector is disabled (set DATASET_PIPELINE_LABEL_STUDIO_URL)")
    client = label_studio.client()
    title = project_title(label_studio.project_prefix, taxonomy.load())
    project = client.find_project(title)
    if project is None:
        return SkipReason(f"no project {title!r} in Label Studio at {label_studio.url} yet")
    signatures = review_signatures(client.tasks(int(project["id"])))
    seen = json.loads(context.cursor) if context.cursor else {}
    known = set(context.instance.get_dynamic_partitions(capture_batches.name))
    changed = sorted(b for b, signature in signatures.items() if seen.get(b) != signature and b in known)
    if not changed:
        return SkipReason(f"no review changed in {title!r} ({len(signatures)} batches with annotations)")
    return SensorResult(
        run_requests=[
            RunRequest(
                partition_key=batch,
                run_key=f"label-studio:{batch}:{signatures[batch]}",
                tags={
                    "dataset_pipeline/batch": batch,
                    "dataset_pipeline/trigger": "label_studio_review_sensor",
                },
            )
            for batch in changed
        ],
        cursor=json.dumps(signatures, sort_keys=True),
    )


@schedule(
    job=corpus_job,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Nightly: rebuilds the corpus, reports, release and card when a batch was reviewed since the "
    "last card; nothing otherwise.",
)
def nightly_release_schedule(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
    """One run per new review: the run key is the newest reviewed_annotations materialization, so a
    re-evaluated tick (daemon restart) never starts it twice."""
    newest_review = _newest_storage_id(context.instance, "reviewed_annotations")
    if newest_review is None:
        return SkipReason("no batch has been reviewed yet")
    newest_card = _newest_storage_id(context.instance, "dataset_card")
    if newest_card is not None and newest_card > newest_review:
        return SkipReason("no batch reviewed since the last release card")
    return RunRequest(
        run_key=f"nightly-release:{newest_review}",
        tags={"dataset_pipeline/trigger": "nightly_release_schedule"},
    )


def _newest_storage_id(instance: DagsterInstance, asset: str) -> int | None:
    records = instance.fetch_materializations(AssetKey(asset), limit=1).records
    return records[0].storage_id if records else None


@dataclass
class StageOutcome:
    """What one stage's run produced, for the CLI to print."""

    asset: str
    success: bool
    run_id: str
    figures: dict[str, object] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    checks: list[tuple[str, str, str]] = field(
        default_factory=list
    )  # name, passed/FAILED/flagged, description
    error: str = ""

    @property
    def passed(self) -> bool:
        """The run succeeded and no blocking check failed (a flagged non-blocking check is fine)."""
        return self.success and all(status != "FAILED" for _, status, _ in self.checks)


def batch_stages(batch: str) -> list[tuple[str, str, str | None]]:
    """(job, asset, partition) of the per-batch stages, up to the annotation tasks."""
    return [(capture_batch_job.name, a.key.to_user_string(), batch) for a in PER_BATCH_ASSETS]


def review_stages(batch: str) -> list[tuple[str, str, str | None]]:
    return [(review_job.name, a.key.to_user_string(), batch) for a in REVIEW_ASSETS]


def corpus_stages() -> list[tuple[str, str, str | None]]:
    return [(corpus_job.name, a.key.to_user_string(), None) for a in CORPUS_ASSETS]


def iter_stages(
    plan: list[tuple[str, str, str | None]], instance: DagsterInstance | None = None
) -> Iterator[StageOutcome]:
    """Materialize each planned asset in order, one run per stage; yield each outcome as its run ends.

    Runs are recorded in ``instance`` (default: the one of $DAGSTER_HOME, so ``dagster dev``
    shows them). A stage whose run fails or whose blocking check fails stops the ones after it.
    """
    if instance is None:
        with DagsterInstance.get() as home_instance:
            yield from iter_stages(plan, home_instance)
        return
    from dataset_pipeline.definitions import defs

    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    blocking = {key.name: spec.blocking for key, spec in _check_specs().items()}
    for job_name, asset_name, partition in plan:
        if partition is not None and partition not in instance.get_dynamic_partitions(capture_batches.name):
            instance.add_dynamic_partitions(capture_batches.name, [partition])
        tags = {"dataset_pipeline/stage": asset_name} | (
            {"dataset_pipeline/batch": partition} if partition else {}
        )
        with _stage_run(defs, job_name, asset_name, partition, instance, tags, quiet) as result:
            outcome = _outcome(result, asset_name, partition, blocking)
        yield outcome
        if not outcome.passed:
            return


def resolved_job(name: str):
    """The code location's job ``name``, resolved (for reconstructable runs on other processes)."""
    from dataset_pipeline.definitions import defs

    return defs.resolve_job_def(name)


@contextmanager
def _stage_run(defs, job_name, asset_name, partition, instance, tags, run_config):
    """One stage's run: in this process by default; with DATASET_PIPELINE_EXECUTOR set, through the
    code location's executor (Celery workers, Kubernetes jobs), which needs a reconstructable job."""
    if os.environ.get("DATASET_PIPELINE_EXECUTOR"):
        from dagster import build_reconstructable_job, execute_job

        job = build_reconstructable_job(
            "dataset_pipeline.automation", "resolved_job", reconstructable_args=(job_name,)
        )
        with execute_job(
            job,
            instance,
            run_config=run_config,
            tags=tags | ({"dagster/partition": partition} if partition else {}),
            asset_selection=[AssetKey(asset_name)],
            raise_on_error=False,
        ) as result:
            yield result
        return
    yield defs.resolve_job_def(job_name).execute_in_process(
        run_config=run_config,
        instance=instance,
        partition_key=partition,
        asset_selection=[AssetKey(asset_name)],
        raise_on_error=False,
        tags=tags,
    )


def _outcome(result, asset_name: str, partition: str | None, blocking: dict[str, bool]) -> StageOutcome:
    label = f"{asset_name} [{partition}]" if partition else asset_name
    outcome = StageOutcome(asset=label, success=result.success, run_id=result.run_id)
    for event in result.get_asset_materialization_events():
        for key, value in event.materialization.metadata.items():
            if isinstance(value, PathMetadataValue):
                outcome.paths[key] = str(value.value)
            elif isinstance(value.value, (int, float)) and not isinstance(value.value, bool):
                outcome.figures[key] = value.value
            elif isinstance(value.value, str) and len(value.value) < 60 and "\n" not in value.value:
                outcome.figures[key] = value.value  # short labels (backend, device), not markdown
    for evaluation in result.get_asset_check_evaluations():
        status = (
            "passed"
            if evaluation.passed
            else ("FAILED" if blocking.get(evaluation.check_name, True) else "flagged")
        )
        outcome.checks.append((evaluation.check_name, status, evaluation.description or ""))
    if not result.success:
        failures = [e for e in result.all_events if e.is_step_failure]
        outcome.error = "; ".join(_failure_message(f) for f in failures) or "a blocking check failed"
    return outcome


def _check_specs() -> dict:
    from dataset_pipeline.definitions import defs

    graph = defs.resolve_asset_graph()
    return {key: graph.get_check_spec(key) for key in graph.asset_check_keys}


def _failure_message(event) -> str:
    data = event.step_failure_data
    if data.user_failure_data is not None and data.user_failure_data.description:
        return data.user_failure_data.description
    return data.error.message.strip() if data.error else "step failed"

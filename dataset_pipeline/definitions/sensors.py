"""The sensors: new uploads, new or changed review exports, reviews in a live Label Studio, and the
automation conditions (a new review leads to the corpus stages)."""

import json

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    AssetSelection,
    AutomationConditionSensorDefinition,
    DagsterInstance,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from assets.partitions import CAPTURE_BATCHES, capture_batches
from dataset_pipeline import layout
from dataset_pipeline.definitions.jobs import (
    PER_BATCH_STAGES,
    REVIEW_STAGES,
    capture_batch_job,
    review_job,
    run_tags,
)
from dataset_pipeline.formats.label_studio.client import project_title, review_signatures
from dataset_pipeline.raw_captures import find_ready_batches
from dataset_pipeline.reviewed_annotations import files_digest, review_files
from resources import DatasetStoreResource, LabelStudioResource, TaxonomyResource


@sensor(
    job=capture_batch_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Starts capture_batch_job for each new batch under `incoming/` once its `manifest.csv` exists "
    "(images) or its `UPLOAD_COMPLETE` marker (a LeRobot, RLDS or episode-HDF5 dataset).",
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
        return SkipReason(f"no new batch under {store.url(layout.UPLOADS)} ({len(ready)} known)")
    known = set(context.instance.get_dynamic_partitions(CAPTURE_BATCHES))
    done = context.instance.get_materialized_partitions(AssetKey("raw_captures"))
    to_add = [b for b in new if b not in known]
    requests = [
        RunRequest(
            partition_key=b,
            run_key=f"capture_batch:{b}",
            tags={"dataset_pipeline/batch": b} | run_tags(PER_BATCH_STAGES),
        )
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
    description="Starts review_job for a batch when an export file lands in (or changes in) `reviews/<batch>/`.",
)
def review_export_sensor(
    context: SensorEvaluationContext, dataset_store: DatasetStoreResource
) -> SensorResult | SkipReason:
    """The cursor holds each review file's signature (size and modification stamp); a new or
    changed file requests a run for its batch, keyed by the batch's set of signatures, so
    the same files never run twice, also across overlapping ticks or restarts. A batch whose
    latest import read exactly these files (the CLI's `demo` imports its own) is registered
    without a run."""
    store = dataset_store.get_store()
    files = review_files(store)
    seen = json.loads(context.cursor) if context.cursor else {}
    changed = sorted(
        {layout.batch_of_review(key) for key, signature in files.items() if seen.get(key) != signature}
    )
    if not changed:
        return SkipReason(f"no new review export ({len(files)} known)")
    known = set(context.instance.get_dynamic_partitions(CAPTURE_BATCHES))
    requests = []
    for batch in changed:
        if batch not in known:
            context.log.warning(
                f"{layout.review_prefix(batch)}/ has exports but no capture batch {batch!r}: ignored"
            )
            continue
        digest = files_digest({k: v for k, v in files.items() if layout.batch_of_review(k) == batch})
        if _imported_digest(context.instance, batch) == digest:
            context.log.info(f"{layout.review_prefix(batch)}/: these files are imported already")
            continue
        requests.append(
            RunRequest(
                partition_key=batch,
                run_key=f"review:{batch}:{digest}",
                tags={"dataset_pipeline/batch": batch} | run_tags(REVIEW_STAGES),
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
    if not label_studio.enabled:
        return SkipReason("the Label Studio connector is disabled (set DATASET_PIPELINE_LABEL_STUDIO_URL)")
    client = label_studio.client()
    title = project_title(label_studio.project_prefix, taxonomy.load())
    project = client.find_project(title)
    if project is None:
        return SkipReason(f"no project {title!r} in Label Studio at {label_studio.url} yet")
    signatures = review_signatures(client.tasks(int(project["id"])))
    seen = json.loads(context.cursor) if context.cursor else {}
    known = set(context.instance.get_dynamic_partitions(CAPTURE_BATCHES))
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
                }
                | run_tags(REVIEW_STAGES),
            )
            for batch in changed
        ],
        cursor=json.dumps(signatures, sort_keys=True),
    )


#: Evaluates the assets' automation conditions (eager: annotation_corpus after a new review, then
#: quality_report, agreement_report, dataset_splits, the baseline and what follows it), running from
#: the first `dagster dev` on: Dagster's own default sensor for them starts stopped, so the eager
#: conditions would never fire unless someone turned it on.
automation_condition_sensor = AutomationConditionSensorDefinition(
    "automation_condition_sensor",
    target=AssetSelection.all(),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Materializes what follows a new review (the eager stages): annotation_corpus, the reports, "
    "splits, baseline, zero-shot and the active-learning queue. The release follows nightly.",
)


def _imported_digest(instance: DagsterInstance, batch: str) -> str | None:
    """The review files' digest the batch's latest reviewed_annotations materialization recorded."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("reviewed_annotations"), asset_partitions=[batch]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    value = records[0].asset_materialization.metadata.get("review_files_digest")
    return str(value.value) if value is not None else None


SENSORS = [
    capture_upload_sensor,
    review_export_sensor,
    label_studio_review_sensor,
    automation_condition_sensor,
]

"""The schedule: a nightly re-release when something was reviewed since the last card."""

from dagster import (
    AssetKey,
    DagsterInstance,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from dataset_pipeline.definitions.jobs import CORPUS_STAGES, corpus_job, run_tags


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
        tags={"dataset_pipeline/trigger": "nightly_release_schedule"} | run_tags(CORPUS_STAGES),
    )


def _newest_storage_id(instance: DagsterInstance, asset: str) -> int | None:
    records = instance.fetch_materializations(AssetKey(asset), limit=1).records
    return records[0].storage_id if records else None


SCHEDULES = [nightly_release_schedule]

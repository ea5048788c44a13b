"""How runs start: the upload sensor, the per-batch job, and the launcher the CLI uses.

One of the two modules of dataset_pipeline/ that know Dagster (with definitions.py).
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from dagster import (
    AssetKey,
    AssetSelection,
    DagsterInstance,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    sensor,
)

from assets import PER_BATCH_ASSETS, capture_batches
from dataset_pipeline.captures import find_ready_batches
from resources import DatasetStoreResource

capture_batch_job = define_asset_job(
    "capture_batch_job",
    selection=AssetSelection.assets(*PER_BATCH_ASSETS),
    partitions_def=capture_batches,
    description="Everything that runs for one upload batch, with its gating checks.",
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


@dataclass
class StageOutcome:
    """What one stage's run produced, for the CLI to print."""

    asset: str
    success: bool
    run_id: str
    metadata: dict[str, object] = field(default_factory=dict)
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    error: str = ""


def run_batch_stages(
    batch: str,
    on_stage: Callable[[int, int, str], None] | None = None,
    instance: DagsterInstance | None = None,
) -> list[StageOutcome]:
    """Register ``batch`` and materialize each per-batch asset in order, one run per stage.

    Runs are recorded in ``instance`` (default: the one of $DAGSTER_HOME, so ``dagster dev``
    shows them); a stage whose blocking check fails stops the ones after it.
    """
    if instance is None:
        with DagsterInstance.get() as home_instance:
            return run_batch_stages(batch, on_stage, home_instance)
    from dataset_pipeline.definitions import defs

    if batch not in instance.get_dynamic_partitions(capture_batches.name):
        instance.add_dynamic_partitions(capture_batches.name, [batch])
    job = defs.resolve_job_def(capture_batch_job.name)
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    outcomes: list[StageOutcome] = []
    for index, stage in enumerate(PER_BATCH_ASSETS, start=1):
        name = stage.key.to_user_string()
        if on_stage:
            on_stage(index, len(PER_BATCH_ASSETS), name)
        result = job.execute_in_process(
            run_config=quiet,
            instance=instance,
            partition_key=batch,
            asset_selection=[stage.key],
            raise_on_error=False,
            tags={"dataset_pipeline/stage": name, "dataset_pipeline/batch": batch},
        )
        outcome = StageOutcome(asset=name, success=result.success, run_id=result.run_id)
        for event in result.get_asset_materialization_events():
            outcome.metadata = {k: v.value for k, v in event.materialization.metadata.items()}
        for evaluation in result.get_asset_check_evaluations():
            outcome.checks.append((evaluation.check_name, evaluation.passed, evaluation.description or ""))
        if not result.success:
            failures = [e for e in result.all_events if e.is_step_failure]
            outcome.error = (
                "; ".join(
                    (
                        f.step_failure_data.error.message.strip()
                        if f.step_failure_data.error
                        else "step failed"
                    )
                    for f in failures
                )
                or "a blocking check failed"
            )
        outcomes.append(outcome)
        if not outcome.success or not all(passed for _, passed, _ in outcome.checks):
            break
    return outcomes

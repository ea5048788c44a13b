"""How runs start: the upload sensor, the per-batch job, and the launcher the CLI uses.

One of the two modules of dataset_pipeline/ that know Dagster (with definitions.py).
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from dagster import (
    AssetKey,
    AssetSelection,
    DagsterInstance,
    DefaultSensorStatus,
    PathMetadataValue,
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
    figures: dict[str, object] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    error: str = ""

    @property
    def passed(self) -> bool:
        """The run succeeded and every check passed (a failed WARN check counts as passed)."""
        return self.success and all(ok for _, ok, _ in self.checks)


def iter_batch_stages(batch: str, instance: DagsterInstance | None = None) -> Iterator[StageOutcome]:
    """Register ``batch`` and materialize each per-batch asset in order, one run per stage.

    Yields each stage's outcome as soon as its run ends. Runs are recorded in ``instance``
    (default: the one of $DAGSTER_HOME, so ``dagster dev`` shows them); a stage whose run
    fails or whose blocking check fails stops the ones after it.
    """
    if instance is None:
        with DagsterInstance.get() as home_instance:
            yield from iter_batch_stages(batch, home_instance)
        return
    from dataset_pipeline.definitions import defs

    if batch not in instance.get_dynamic_partitions(capture_batches.name):
        instance.add_dynamic_partitions(capture_batches.name, [batch])
    job = defs.resolve_job_def(capture_batch_job.name)
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    for stage in PER_BATCH_ASSETS:
        name = stage.key.to_user_string()
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
            for key, value in event.materialization.metadata.items():
                if isinstance(value, PathMetadataValue):
                    outcome.paths[key] = str(value.value)
                elif isinstance(value.value, (int, float)) and not isinstance(value.value, bool):
                    outcome.figures[key] = value.value
                elif isinstance(value.value, str) and len(value.value) < 60 and "\n" not in value.value:
                    outcome.figures[key] = value.value  # short labels (backend, device), not markdown
        blocking = {key.name: spec.blocking for key, spec in _check_specs().items()}
        for evaluation in result.get_asset_check_evaluations():
            ok = evaluation.passed or not blocking.get(evaluation.check_name, True)
            outcome.checks.append((evaluation.check_name, ok, evaluation.description or ""))
        if not result.success:
            failures = [e for e in result.all_events if e.is_step_failure]
            outcome.error = "; ".join(_failure_message(f) for f in failures) or "a blocking check failed"
        yield outcome
        if not outcome.passed:
            return


def _check_specs() -> dict:
    from dataset_pipeline.definitions import defs

    graph = defs.resolve_asset_graph()
    return {key: graph.get_check_spec(key) for key in graph.asset_check_keys}


def _failure_message(event) -> str:
    data = event.step_failure_data
    if data.user_failure_data is not None and data.user_failure_data.description:
        return data.user_failure_data.description
    return data.error.message.strip() if data.error else "step failed"

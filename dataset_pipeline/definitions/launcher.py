"""The CLI's launcher: each stage materialized in a Dagster run of its own, recorded in the instance.

``dataset-pipeline demo`` runs the main job through here, so every run it makes is in
DAGSTER_HOME and shown by ``dagster dev`` as if the UI had launched it.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from dagster import AssetCheckSeverity, AssetKey, DagsterInstance, PathMetadataValue

from assets.partitions import CAPTURE_BATCHES
from dataset_pipeline.definitions import defs
from dataset_pipeline.definitions.jobs import (
    CORPUS_STAGES,
    PER_BATCH_STAGES,
    PROPAGATION_STAGES,
    REVIEW_STAGES,
    capture_batch_job,
    corpus_job,
    propagation_job,
    review_job,
    run_tags,
)


@dataclass(frozen=True)
class CheckOutcome:
    """One check's result: ``status`` is passed, FAILED (blocking: what follows does not run) or
    flagged (a warning, or a non-blocking check); ``gates`` the stages a failure holds back."""

    name: str
    status: str
    description: str
    gates: tuple[str, ...] = ()


@dataclass
class StageOutcome:
    """What one stage's run produced, for the CLI to print."""

    asset: str
    success: bool
    run_id: str
    figures: dict[str, object] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    checks: list[CheckOutcome] = field(default_factory=list)
    error: str = ""

    @property
    def passed(self) -> bool:
        """The run succeeded and no blocking check failed (a flagged non-blocking check is fine)."""
        return self.success and all(check.status != "FAILED" for check in self.checks)


def batch_stages(batch: str) -> list[tuple[str, str, str | None]]:
    """(job, asset, partition) of the per-batch stages, up to the annotation tasks."""
    return [(capture_batch_job.name, asset, batch) for asset in PER_BATCH_STAGES]


def review_stages(batch: str) -> list[tuple[str, str, str | None]]:
    return [(review_job.name, asset, batch) for asset in REVIEW_STAGES]


def propagation_stages(batch: str) -> list[tuple[str, str, str | None]]:
    return [(propagation_job.name, asset, batch) for asset in PROPAGATION_STAGES]


def corpus_stages() -> list[tuple[str, str, str | None]]:
    return [(corpus_job.name, asset, None) for asset in CORPUS_STAGES]


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
    # The terminal gets the CLI's own summary of each stage; Dagster's console logger would print a
    # failed step's ERROR lines and stack trace first. They stay in the run's event log.
    quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    blocking = {key.name: spec.blocking for key, spec in _check_specs().items()}
    for job_name, asset_name, partition in plan:
        if partition is not None and partition not in instance.get_dynamic_partitions(CAPTURE_BATCHES):
            instance.add_dynamic_partitions(CAPTURE_BATCHES, [partition])
        tags = (
            {"dataset_pipeline/stage": asset_name}
            | ({"dataset_pipeline/batch": partition} if partition else {})
            | run_tags([asset_name])
        )
        with _stage_run(job_name, asset_name, partition, instance, tags, quiet) as result:
            if _interrupted(result):
                # Ctrl-C inside a step: Dagster ends the step with its own error; the caller gets
                # the interrupt (and knows the stage it was on), not a failed stage.
                raise KeyboardInterrupt
            outcome = _outcome(result, asset_name, partition, blocking)
        yield outcome
        if not outcome.passed:
            return


def resolved_job(name: str):
    """The code location's job ``name``, resolved (for reconstructable runs on other processes)."""
    return defs.resolve_job_def(name)


@contextmanager
def _stage_run(job_name, asset_name, partition, instance, tags, run_config):
    """One stage's run: in this process by default; with DATASET_PIPELINE_EXECUTOR set, through the
    code location's executor (Celery workers, Kubernetes jobs), which needs a reconstructable job."""
    if os.environ.get("DATASET_PIPELINE_EXECUTOR"):
        from dagster import build_reconstructable_job, execute_job

        job = build_reconstructable_job(
            "dataset_pipeline.definitions.launcher", "resolved_job", reconstructable_args=(job_name,)
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
        stops = blocking.get(evaluation.check_name, True) and evaluation.severity == AssetCheckSeverity.ERROR
        status = "passed" if evaluation.passed else ("FAILED" if stops else "flagged")
        outcome.checks.append(
            CheckOutcome(
                evaluation.check_name,
                status,
                evaluation.description or "",
                _downstream(evaluation.asset_key) if status == "FAILED" else (),
            )
        )
    if not result.success:
        failures = [e for e in result.all_events if e.is_step_failure]
        blocked = [c.name for c in outcome.checks if c.status == "FAILED"]
        outcome.error = "; ".join(_failure_message(f) for f in failures if not blocked) or (
            f"blocking check {', '.join(blocked)} failed" if blocked else "step failed"
        )
    return outcome


def _interrupted(result) -> bool:
    """Whether the run ended because its process was interrupted (SIGINT, SIGTERM)."""
    return any(
        e.is_step_failure
        and e.step_failure_data.error is not None
        and e.step_failure_data.error.cls_name == "DagsterExecutionInterruptedError"
        for e in result.all_events
    )


def _downstream(key: AssetKey) -> tuple[str, ...]:
    """The stages that depend on an asset, in pipeline order (what its failed blocking check holds back)."""
    graph = defs.resolve_asset_graph()
    below = {k.to_user_string() for k in graph.get(key).child_keys}
    return tuple(
        stage
        for stage in (*PER_BATCH_STAGES, *REVIEW_STAGES, *PROPAGATION_STAGES, *CORPUS_STAGES)
        if stage in below
    )


def _check_specs() -> dict:
    graph = defs.resolve_asset_graph()
    return {key: graph.get_check_spec(key) for key in graph.asset_check_keys}


def _failure_message(event) -> str:
    data = event.step_failure_data
    if data.user_failure_data is not None and data.user_failure_data.description:
        return data.user_failure_data.description
    return data.error.message.strip() if data.error else "step failed"

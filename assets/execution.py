"""How asset steps run: the tags that route them to GPU or CPU workers, and their retry policy.

* ``dataset_pipeline/device``: what the step needs (``gpu`` / ``cpu``), for people and for tests;
* ``dagster-celery/queue``: the Celery queue the step is sent to by ``dagster_celery``'s executor
  (GPU workers consume ``gpu``; CPU workers ``cpu`` and ``dagster``, the queue of the asset checks);
* ``dagster-k8s/config``: with ``dagster_k8s``' executor or run launcher, GPU step pods request and
  are limited to one ``nvidia.com/gpu`` (and tolerate the usual GPU node taint);
* ``ecs/container_overrides``: with ``dagster_aws``' ECS executor, a GPU step's container asks ECS
  for one GPU (``resourceRequirements``; the cluster needs a GPU capacity provider);
* the run tag ``dataset_pipeline/uses-gpu`` on the runs that contain a GPU step, for the run
  queue's tag concurrency limit (dagster.prod.yaml); given per run (``definitions.jobs.run_tags``).

Every asset that reads or writes the store is ``retried_on_store_outage``: a step that failed
because the store (or a server behind it) could not be reached runs again, up to 3 more times,
2, 4 and 8 s later, so an S3 outage of a few seconds is ridden out, not reported as a failed run.
Only those failures: a malformed export or a corrupt image fails the step at once with its own
message (it would fail the same way four times), and Ctrl-C stops the run. Dagster's
``RetryPolicy`` cannot be used for this: it retries every exception, interrupts included
(``DagsterExecutionInterruptedError`` becomes a ``RetryRequested``), so a Ctrl-C during a
stage was answered by running the stage again.
"""

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from dagster import RetryRequested

from dataset_pipeline.store import RawUploadError, StoreError

STORE_RETRIES = 3
STORE_RETRY_FIRST_WAIT_S = 2.0

F = TypeVar("F", bound=Callable[..., Any])


def is_store_outage(error: BaseException) -> bool:
    """Whether ``error`` (or an error it was raised from) says the store or a server could not be
    reached, as opposed to a refusal or bad input that a second try would meet again.

    >>> is_store_outage(StoreError("s3://b/k: cannot reach the store (Could not connect)"))
    True
    >>> is_store_outage(ValueError("reviews/b/export.json: record 3: field 'label': unknown class"))
    False
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, StoreError) and not isinstance(current, RawUploadError):
            return True
        if isinstance(current, (ConnectionError, TimeoutError)):
            return True
        module = type(current).__module__
        if module.startswith("botocore.") or (
            module.startswith(("requests.", "urllib3.")) and "Connect" in type(current).__name__
        ):
            return True
        # what it was raised from; or, unless `from None` hid it, what it was raised while handling
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return False


def retried_on_store_outage(fn: F) -> F:
    """Run the step again when it failed on a store outage (``is_store_outage``); the waits
    double from ``STORE_RETRY_FIRST_WAIT_S``. Placed under ``@asset`` / ``@asset_check``; the
    step's first parameter is its context."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator_step(context: Any, *args: Any, **kwargs: Any) -> Any:
            with _outage_retried(context):
                yield from fn(context, *args, **kwargs)

        return generator_step  # type: ignore[return-value]

    @functools.wraps(fn)
    def step(context: Any, *args: Any, **kwargs: Any) -> Any:
        with _outage_retried(context):
            return fn(context, *args, **kwargs)

    return step  # type: ignore[return-value]


@contextmanager
def _outage_retried(context: Any) -> Iterator[None]:
    try:
        yield
    except Exception as error:
        if not is_store_outage(error):
            raise
        raise RetryRequested(
            max_retries=STORE_RETRIES,
            seconds_to_wait=STORE_RETRY_FIRST_WAIT_S * 2**context.retry_number,
        ) from error


GPU_TAGS: dict[str, object] = {
    "dataset_pipeline/device": "gpu",
    "dagster-celery/queue": "gpu",
    "dagster-k8s/config": {
        "container_config": {
            "resources": {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}}
        },
        "pod_spec_config": {
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        },
    },
    "ecs/container_overrides": {"resourceRequirements": [{"type": "GPU", "value": "1"}]},
}
CPU_TAGS: dict[str, object] = {"dataset_pipeline/device": "cpu", "dagster-celery/queue": "cpu"}
GPU_RUN_TAGS: dict[str, str] = {"dataset_pipeline/uses-gpu": "true"}


def with_priority(tags: dict[str, object], priority: int) -> dict[str, object]:
    """``tags`` and a step priority (0-10, default 5: higher goes first among ready steps), under
    both executors' tags: ``dagster/priority`` (multiprocess) and ``dagster-celery/priority``
    (Celery: the order steps are sent in, which with this project's worker settings,
    ``dagster_celery_config``, is the order free workers take them)."""
    return {**tags, "dagster/priority": str(priority), "dagster-celery/priority": str(priority)}


def run_lineage(context: Any) -> list[str]:
    """This run's id, then those of the runs it re-executes (parent, its parent...): a re-execution
    does not run again the steps that succeeded there, so what they recorded still stands."""
    runs: list[str] = []
    run_id = context.run.run_id  # an asset check's context has .run, not .run_id
    while run_id and run_id not in runs:
        runs.append(run_id)
        run = context.instance.get_run_by_id(run_id)
        run_id = run.parent_run_id if run is not None else None
    return runs


def step_tags(asset: Any) -> dict[str, Any]:
    """The op tags of an asset's steps: its op's, or for a graph-backed asset (dataset_release's
    fan-out) those of all its ops, which carry the same routing tags."""
    from dagster import OpDefinition

    node = asset.node_def
    ops = [node] if isinstance(node, OpDefinition) else list(node.iterate_op_defs())
    tags: dict[str, Any] = {}
    for op_def in ops:
        tags.update(op_def.tags)
    return tags

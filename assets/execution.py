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

Every asset that reads or writes the store retries on a failed step (``STORE_RETRY``): an S3
outage of a few seconds is ridden out by the retries, not reported as a failed run.
"""

from dagster import Backoff, RetryPolicy

STORE_RETRY = RetryPolicy(max_retries=3, delay=2, backoff=Backoff.EXPONENTIAL)

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

"""Celery settings of this project's workers: ``dagster_celery``'s app imports this module, when it
can, on top of its defaults (``celery -A dagster_celery.app worker`` run where it is importable:
the project's folder, or an install of the project).

A worker takes one step at a time and only when it is free: with Celery's defaults (prefetch
multiplier 4, a message acknowledged when its task starts) each worker reserved steps as they were
sent, so two workers took the release's 20 steps ten each, in turn, whatever their lengths
(benchmarks/README.md). Acknowledged late, with a prefetch of one, the step goes to the worker
that is free, in the order the executor sends them (longest first: assets/execution.py's
``with_priority``); a step whose worker died is delivered again, and the release's steps are made
to run twice safely (a shard is done once its index part is written).

The broker and the result backend are the executor's (``DATASET_PIPELINE_CELERY_BROKER``,
``DATASET_PIPELINE_CELERY_BACKEND``; dataset_pipeline/definitions/environment.py), so workers
started with no ``-b`` use the same ones.
"""

import os

worker_prefetch_multiplier = 1
task_acks_late = True
# dagster_celery's connection retries, and for a Redis or SQS broker a visibility timeout longer
# than any step (a message unacknowledged past it is delivered again, to a second worker)
broker_transport_options = {
    "max_retries": 3,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
    "visibility_timeout": 12 * 3600,
}

if os.environ.get("DATASET_PIPELINE_CELERY_BROKER"):
    broker_url = os.environ["DATASET_PIPELINE_CELERY_BROKER"]
if os.environ.get("DATASET_PIPELINE_CELERY_BACKEND"):
    result_backend = os.environ["DATASET_PIPELINE_CELERY_BACKEND"]

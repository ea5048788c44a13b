"""The Dagster wiring, all of it, and the code location: assets, checks, resources, jobs, sensors
and the schedule together in ``defs``.

The one place of ``dataset_pipeline`` that knows Dagster:

* ``jobs.py``        - which stages run together (per batch, per review, over the corpus);
* ``sensors.py``     - new uploads, new review exports, a live Label Studio's reviews;
* ``schedules.py``   - the nightly re-release;
* ``environment.py`` - the resources and the executor the environment configures;
* ``launcher.py``    - the CLI's stage runner (one recorded run per stage).

Loaded by ``dagster dev`` (workspace.yaml), every step process and every CLI call, so it
imports nothing heavy: torch, sam2, smp and great_expectations are imported inside the
functions that use them.

Environment:
    DATASET_PIPELINE_STORE     store root, a folder or s3://bucket/prefix (default ./data)
    DATASET_PIPELINE_S3_ENDPOINT  S3-compatible endpoint (else botocore's AWS_ENDPOINT_URL)
    DATASET_PIPELINE_S3_ACCESS_KEY_ID, DATASET_PIPELINE_S3_SECRET_ACCESS_KEY
                               the store's S3 credentials, as dagster EnvVars (else botocore's own chain)
    DATASET_PIPELINE_TAXONOMY  taxonomy YAML (default: the packaged tabletop taxonomy)
    DATASET_PIPELINE_SAM2_CHECKPOINT  SAM 2 checkpoint file; unset = classical pre-mask backend
    DATASET_PIPELINE_SAM2_CONFIG  sam2 model config (default configs/sam2.1/sam2.1_hiera_t.yaml)
    DATASET_PIPELINE_BASELINE_EPOCHS  baseline training epochs (default 20)
    DATASET_PIPELINE_LABEL_STUDIO_URL, DATASET_PIPELINE_LABEL_STUDIO_TOKEN
                               a live Label Studio: annotation_tasks pushes, label_studio_review_sensor pulls
    DATASET_PIPELINE_ANNOTATORS  the annotators' ids, comma-separated: annotation_tasks plans who labels
                               what (each batch's gold images to a pair, the pairs rotating)
    DATASET_PIPELINE_IMAGE_URL_MODE, DATASET_PIPELINE_LOCAL_FILES_ROOT
                               how tasks point at images (local-files under Label Studio's document root)
    DATASET_PIPELINE_EXECUTOR  ``celery`` = steps run on Celery workers (queues gpu / cpu); ``k8s`` = one
                               Kubernetes job per step (dagster-k8s in the image); unset = multiprocess
    DATASET_PIPELINE_CELERY_BROKER, DATASET_PIPELINE_CELERY_BACKEND  Celery URLs (default local RabbitMQ, rpc://)
"""

from dagster import Definitions

from assets import ALL_ASSETS, ALL_CHECKS
from dataset_pipeline.definitions.environment import build_executor, build_resources
from dataset_pipeline.definitions.jobs import JOBS
from dataset_pipeline.definitions.schedules import SCHEDULES
from dataset_pipeline.definitions.sensors import SENSORS

defs = Definitions(
    assets=ALL_ASSETS,
    asset_checks=ALL_CHECKS,
    jobs=JOBS,
    sensors=SENSORS,
    schedules=SCHEDULES,
    resources=build_resources(),
    executor=build_executor(),
)

"""sam2_premasks: every image of a batch gets pre-masks before a person sees it.

Prompts come from the upload's ``prompts.csv`` (a detector's boxes and points, with the
class it saw) when the batch has one; an image without prompts gets automatic masks. The
backend is SAM 2 (``sam2.py``) when a checkpoint is configured, else the classical one
(``classical.py``, OpenCV GrabCut / Felzenszwalb), and every mask records which made it.

* ``backends.py`` - what every backend takes and gives (:class:`Prompt`, :class:`PredictedMask`);
* ``prompts.py``  - reading ``prompts.csv``;
* ``batch.py``    - pre-masking a batch into the pre-masks table (:data:`schemas.PREMASKS`).
"""

from dataset_pipeline.sam2_premasks.backends import PredictedMask, PremaskBackend, Prompt
from dataset_pipeline.sam2_premasks.batch import (
    DEFAULT_SCORE_THRESHOLD,
    PremaskRun,
    class_counts,
    premask_batch,
)
from dataset_pipeline.sam2_premasks.prompts import PromptError, read_prompts

__all__ = [
    "DEFAULT_SCORE_THRESHOLD",
    "PredictedMask",
    "PremaskBackend",
    "PremaskRun",
    "Prompt",
    "PromptError",
    "class_counts",
    "premask_batch",
    "read_prompts",
]

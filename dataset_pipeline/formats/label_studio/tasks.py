"""Label Studio project files: the labeling config of a taxonomy and tasks with pre-mask predictions.

A task carries our ``image_id`` beside the image URL, and its pre-masks as one prediction of
brush RLE results; each result's id names its pre-mask (:func:`premask_result_id`), so a mask
an annotator started from leads back to it when the export comes back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

import numpy as np

from dataset_pipeline.formats.label_studio.codec import mask_to_brush_rle
from dataset_pipeline.taxonomy import Taxonomy

BRUSH_FROM_NAME = "brush"
POLYGON_FROM_NAME = "polygon"
IMAGE_TO_NAME = "image"


CLICK_FROM_NAME = "click"
BOX_FROM_NAME = "box"
#: Result ids of masks the ML backend answered an annotator's click with start with this: an
#: annotation that kept one is SAM-assisted, though no pre-mask of ours names it.
INTERACTIVE_RESULT_PREFIX = "ia-"


def labeling_config(taxonomy: Taxonomy) -> str:
    """A Label Studio labeling config with BrushLabels and PolygonLabels for every class, and the smart
    KeyPointLabels / RectangleLabels (shown with Auto-Annotation on) whose clicks and boxes go to the
    ML backend (``dataset-pipeline ml-backend``), which answers with a brush mask of the clicked class.

    >>> "<BrushLabels" in labeling_config(__import__("dataset_pipeline.taxonomy").taxonomy.load_taxonomy())
    True
    """
    labels = "\n".join(
        f"    <Label value={quoteattr(c.name)} background={quoteattr(c.colour)}/>"
        for c in taxonomy.foreground
    )
    return (
        f"<View>\n"
        f"  <Header value={quoteattr(f'Segment every object ({taxonomy.tag})')}/>\n"
        f'  <Image name="{IMAGE_TO_NAME}" value="$image" zoom="true" zoomControl="true"/>\n'
        f'  <BrushLabels name="{BRUSH_FROM_NAME}" toName="{IMAGE_TO_NAME}">\n{labels}\n  </BrushLabels>\n'
        f'  <PolygonLabels name="{POLYGON_FROM_NAME}" toName="{IMAGE_TO_NAME}" strokeWidth="2" '
        f'pointSize="small" opacity="0.4">\n{labels}\n  </PolygonLabels>\n'
        f'  <KeyPointLabels name="{CLICK_FROM_NAME}" toName="{IMAGE_TO_NAME}" smart="true" smartOnly="true">\n'
        f"{labels}\n  </KeyPointLabels>\n"
        f'  <RectangleLabels name="{BOX_FROM_NAME}" toName="{IMAGE_TO_NAME}" smart="true" smartOnly="true">\n'
        f"{labels}\n  </RectangleLabels>\n"
        f"</View>\n"
    )


@dataclass(frozen=True)
class TaskMask:
    """One pre-mask to send as a prediction."""

    premask_id: str
    class_name: str
    mask: np.ndarray
    score: float


def premask_result_id(premask_id: str) -> str:
    """The short, stable id a pre-mask carries as a prediction result.

    When an annotator starts from a prediction, Label Studio copies its results with their
    ids and sets ``origin`` to ``prediction`` (or ``prediction-changed`` once edited), so
    this id leads back to the pre-mask.

    >>> premask_result_id("b1/images/f0#p3")
    'pm-92a52c5cbf'
    """
    return "pm-" + hashlib.sha1(premask_id.encode("utf-8")).hexdigest()[:10]


def brush_result(item: TaskMask, height: int, width: int) -> dict:
    """One ``brushlabels`` result of a prediction, as Label Studio stores it."""
    return {
        "id": premask_result_id(item.premask_id),
        "type": "brushlabels",
        "from_name": BRUSH_FROM_NAME,
        "to_name": IMAGE_TO_NAME,
        "original_width": int(width),
        "original_height": int(height),
        "image_rotation": 0,
        "origin": "prediction",
        "score": round(float(item.score), 4),
        "value": {"format": "rle", "rle": mask_to_brush_rle(item.mask), "brushlabels": [item.class_name]},
    }


def build_task(
    image_url: str,
    image_id: str,
    height: int,
    width: int,
    masks: Iterable[TaskMask],
    model_version: str,
    meta: dict | None = None,
) -> dict:
    """A Label Studio task: the image, our ids in ``data``, and the pre-masks as one prediction."""
    items = list(masks)
    task: dict = {"data": {"image": image_url, "image_id": image_id, **(meta or {})}}
    if items:
        task["predictions"] = [
            {
                "model_version": model_version,
                "score": round(float(np.mean([m.score for m in items])), 4),
                "result": [brush_result(m, height, width) for m in items],
            }
        ]
    return task


def tasks_json(tasks: list[dict]) -> bytes:
    """The tasks file that Label Studio's import (UI or ``POST /api/projects/{id}/import``) reads."""
    return json.dumps(tasks, separators=(",", ":")).encode("utf-8")


def saved_filter(title: str, image_ids: Iterable[str], task_ids: dict[str, int] | None = None) -> dict:
    """A Data Manager view selecting the tasks of ``image_ids`` (the body ``POST /api/dm/views``
    takes once ``project`` is set): on task ids when every image was pushed to the live server,
    else on the tasks' ``image_id`` data field (the file imported by hand).

    >>> saved_filter("mine", ["b/1"], {"b/1": 7})["data"]["filters"]["items"][0]["value"]
    7
    """
    ids = list(image_ids)
    if task_ids and all(i in task_ids for i in ids):
        items = [
            {"filter": "filter:tasks:id", "operator": "equal", "type": "Number", "value": int(task_ids[i])}
            for i in ids
        ]
    else:
        items = [
            {"filter": "filter:tasks:data.image_id", "operator": "equal", "type": "String", "value": i}
            for i in ids
        ]
    return {"data": {"title": title, "filters": {"conjunction": "or", "items": items}}}

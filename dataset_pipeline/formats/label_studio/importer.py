"""Label Studio JSON export → annotations.

Reads every task's ``annotations`` (several per task: one per annotator), skipping
cancelled ones (``was_cancelled``). Results of type ``brushlabels`` (brush RLE) and
``polygonlabels`` (points in percent of the image) become annotations; other types are
skipped. Provenance: ``completed_by`` (an id or a user object) → annotator_id,
``created_at``, ``lead_time`` → seconds_spent (spread over the annotation's masks),
``ground_truth`` → expert_approved, an entry in ``reviews`` → peer_reviewed (with its
``accepted``). Label Studio has no z-order; a result's position in the list is used
(later regions are drawn over earlier ones).
A result whose ``origin`` is ``prediction`` or ``prediction-changed`` started from a
pre-mask: its ``id`` is the prediction result's id, which names the pre-mask
(``premask_result_id``); otherwise the best-overlapping pre-mask (IoU ≥ 0.5) is linked.
"""

from __future__ import annotations

import numpy as np

from dataset_pipeline.formats.importing import (
    AnnotationImportError,
    ImportOptions,
    ImportResult,
    annotations_frame,
    check_not_empty,
    load_json,
)
from dataset_pipeline.formats.label_studio.codec import BrushRLEError, brush_rle_to_mask
from dataset_pipeline.formats.label_studio.tasks import INTERACTIVE_RESULT_PREFIX
from dataset_pipeline.masks import encode_mask, polygons_to_rle

FORMATS: tuple[str, ...] = ("label-studio",)


def detect(head: bytes, document: object) -> str | None:
    """Label Studio's JSON export is a list of tasks."""
    return "label-studio" if isinstance(document, list) else None


def read(data: bytes, options: ImportOptions, fmt: str = "label-studio") -> ImportResult:
    return import_label_studio(data, options)


def import_label_studio(data: bytes, options: ImportOptions) -> ImportResult:
    file = options.source_file
    tasks = load_json(data, file)
    if not isinstance(tasks, list):
        raise AnnotationImportError(file, "document", "", "a Label Studio JSON export is a list of tasks")

    rows: list[dict[str, object]] = []
    skipped: list[str] = []
    for task_number, task in enumerate(tasks):
        task_record = f"task {task.get('id', task_number) if isinstance(task, dict) else task_number}"
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise AnnotationImportError(file, task_record, "data", "missing or not an object")
        name = task["data"].get("image_id") or task["data"].get("image")
        if not isinstance(name, str) or not name:
            raise AnnotationImportError(file, task_record, "data.image", "missing")
        annotations = task.get("annotations") or []
        if not isinstance(annotations, list):
            raise AnnotationImportError(file, task_record, "annotations", "not a list")
        for annotation_number, annotation in enumerate(annotations):
            record = f"{task_record} annotation {annotation.get('id', annotation_number) if isinstance(annotation, dict) else annotation_number}"
            if not isinstance(annotation, dict):
                raise AnnotationImportError(file, record, "", "not an object")
            if annotation.get("was_cancelled"):
                skipped.append(f"{record}: cancelled (was_cancelled)")
                continue
            results = annotation.get("result") or []
            if not isinstance(results, list):
                raise AnnotationImportError(file, record, "result", "not a list")
            annotator = _annotator(annotation.get("completed_by"), options.default_annotator)
            masks = []
            for result_number, result in enumerate(results):
                result_record = f"{record} result {result_number}"
                if not isinstance(result, dict):
                    raise AnnotationImportError(file, result_record, "", "not an object")
                kind = str(result.get("type", "")).lower()
                if kind not in ("brushlabels", "polygonlabels"):
                    skipped.append(f"{result_record}: {kind or 'untyped'} results are not masks")
                    continue
                masks.append((result_number, result_record, kind, result))
            lead_time = annotation.get("lead_time")
            seconds = float(lead_time) / len(masks) if isinstance(lead_time, (int, float)) and masks else None
            status, accepted = _review_status(annotation, options.review_status)
            for result_number, result_record, kind, result in masks:
                height, width = result.get("original_height"), result.get("original_width")
                if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (height, width)):
                    raise AnnotationImportError(
                        file,
                        result_record,
                        "original_width/original_height",
                        f"not positive integers ({width!r}, {height!r})",
                    )
                ref = options.image(name, height, width, task_record, "data.image", url=True)
                value = result.get("value")
                if not isinstance(value, dict):
                    raise AnnotationImportError(file, result_record, "value", "missing")
                labels = value.get(kind)
                if not isinstance(labels, list) or len(labels) != 1:
                    raise AnnotationImportError(
                        file, result_record, f"value.{kind}", f"needs exactly one label, got {labels!r}"
                    )
                class_id = options.class_id(labels[0], result_record, f"value.{kind}")
                rle = _rle(kind, value, ref.height, ref.width, result_record, file)
                check_not_empty(rle, ref.height, ref.width, file, result_record, "value")
                origin = result.get("origin")
                named = (
                    options.premask_for_result_id(ref.image_id, str(result.get("id")))
                    if origin in ("prediction", "prediction-changed")
                    else None
                )
                from_click = str(result.get("id", "")).startswith(INTERACTIVE_RESULT_PREFIX)
                rows.append(
                    options.row(
                        ref,
                        annotation_id=f"{ref.image_id}#{annotator}#ls{annotation.get('id', annotation_number)}-{result_number}",
                        annotator_id=annotator,
                        class_id=class_id,
                        rle=rle,
                        z_order=result_number,  # no z-order in Label Studio: later regions are drawn over earlier ones
                        created_at=annotation.get("created_at"),
                        seconds_spent=seconds,
                        tool="label_studio",
                        tool_version=options.tool_version,
                        tool_hint="assisted" if named or from_click else None,
                        premask_id=named,
                        review_status=status,
                        review_accepted=accepted,
                    )
                )
    return ImportResult(annotations_frame(rows), skipped)


def _annotator(completed_by: object, default: str) -> str:
    if isinstance(completed_by, dict):
        return str(
            completed_by.get("email") or completed_by.get("username") or f"ls-user-{completed_by.get('id')}"
        )
    if isinstance(completed_by, (int, str)) and str(completed_by):
        return f"ls-user-{completed_by}" if isinstance(completed_by, int) else completed_by
    return default


def _review_status(annotation: dict, default: str) -> tuple[str, bool | None]:
    """(review_status, accepted) from ``ground_truth`` and Label Studio's ``reviews``."""
    if annotation.get("ground_truth"):
        return "expert_approved", True
    listed = annotation.get("reviews") or []
    reviews = [
        r for r in (listed if isinstance(listed, list) else []) if isinstance(r, dict) and "accepted" in r
    ]
    if reviews:
        return "peer_reviewed", bool(reviews[0]["accepted"])  # the first review is the first pass
    return default, None


def _rle(kind: str, value: dict, height: int, width: int, record: str, file: str) -> str:
    if kind == "brushlabels":
        if value.get("format") != "rle" or not isinstance(value.get("rle"), list):
            raise AnnotationImportError(
                file, record, "value.rle", "brush results need format 'rle' and an rle list"
            )
        try:
            return encode_mask(brush_rle_to_mask(value["rle"], height, width))
        except BrushRLEError as exc:
            raise AnnotationImportError(file, record, "value.rle", str(exc)) from None
    points = value.get("points")
    if not isinstance(points, list) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in points):
        raise AnnotationImportError(file, record, "value.points", "needs a list of [x, y] pairs in percent")
    try:
        flat = np.asarray(points, dtype=np.float64) * [width / 100.0, height / 100.0]
    except (TypeError, ValueError):
        raise AnnotationImportError(file, record, "value.points", "coordinates must be numbers") from None
    try:
        return polygons_to_rle([flat.ravel().tolist()], height, width)
    except ValueError as exc:
        raise AnnotationImportError(file, record, "value.points", str(exc)) from None

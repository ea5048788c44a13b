"""Label Studio's ML backend protocol, as label-studio-ml-backend defines it, over an :class:`InteractiveSession`.

Label Studio calls ``GET /health`` when the model is connected, ``POST /setup`` with the project's
labeling config (and its own URL and a token), ``POST /predict`` with tasks — and, for
interactive pre-annotation, the annotator's smart ``KeyPointLabels`` clicks or
``RectangleLabels`` box in ``params.context`` — and ``POST /webhook`` on annotation events. An
answer to ``/predict`` is ``{"results": [prediction per task]}``; a prediction is
``{"result": [...], "score", "model_version"}`` whose results are ``brushlabels`` RLE masks
with the clicked label. Errors are HTTP errors whose JSON body names the reason; the server
keeps serving.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from dataset_pipeline.formats.label_studio.codec import mask_to_brush_rle
from dataset_pipeline.formats.label_studio.tasks import INTERACTIVE_RESULT_PREFIX
from dataset_pipeline.interactive.images import ImageFetcher, ImageFetchError
from dataset_pipeline.interactive.session import InteractiveSession
from dataset_pipeline.masks import mask_bbox

log = logging.getLogger(__name__)

SMART_TYPES = ("keypointlabels", "rectanglelabels")
BATCH_IMAGES = 8  # images per detector + SAM 2 batch for batch predictions


class BackendError(RuntimeError):
    """A request the backend cannot answer; ``status`` is its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class LabelConfig:
    """What the backend needs of a labeling config: where masks go and which labels exist."""

    image_name: str  # the Image tag's name: results' to_name
    image_key: str  # the task data key of the image ($image → "image")
    brush_name: str  # the BrushLabels tag's name: results' from_name
    labels: tuple[str, ...]  # the BrushLabels' label values


def parse_label_config(xml: str) -> LabelConfig:
    """The Image and BrushLabels of a labeling config (the first BrushLabels on an Image).

    >>> parse_label_config('<View><Image name="img" value="$photo"/>'
    ...     '<BrushLabels name="b" toName="img"><Label value="mug"/></BrushLabels></View>')
    LabelConfig(image_name='img', image_key='photo', brush_name='b', labels=('mug',))
    """
    from defusedxml import ElementTree as SafeET

    if not isinstance(xml, str) or not xml.strip():
        raise BackendError(422, "the labeling config is missing (label_config / schema)")
    try:
        root = SafeET.fromstring(xml, forbid_dtd=True)
    except Exception as exc:  # defusedxml raises ParseError and its own subclasses
        raise BackendError(422, f"the labeling config is not valid XML ({exc})") from None
    images = {tag.get("name"): tag.get("value", "") for tag in root.iter("Image")}
    for brush in root.iter("BrushLabels"):
        target = brush.get("toName")
        if target in images:
            labels = tuple(label.get("value", "") for label in brush.iter("Label"))
            return LabelConfig(str(target), images[target].lstrip("$"), str(brush.get("name")), labels)
    raise BackendError(
        422, "the labeling config has no BrushLabels on an Image: the backend answers with brush masks"
    )


def _result_id(task_id: object, label: str, mask: np.ndarray) -> str:
    """A stable id for a mask the backend answered with (task, label, area, box)."""
    key = f"{task_id}|{label}|{int(mask.sum())}|{mask_bbox(mask)}"
    return INTERACTIVE_RESULT_PREFIX + hashlib.sha1(key.encode()).hexdigest()[:10]


class LabelStudioMLBackend:
    """The protocol's four calls, independent of the web framework (see :func:`create_app`)."""

    def __init__(self, session: InteractiveSession, fetcher: ImageFetcher) -> None:
        self.session = session
        self.fetcher = fetcher

    # -- what the backend can do, said plainly ------------------------------------------------
    @property
    def batch_predictions(self) -> bool:
        return self.session.detector is not None

    @property
    def model_version(self) -> str:
        return self.session.model_version

    def note(self) -> str:
        """What the backend answers with, and for batch predictions what to configure."""
        if self.session.detector is not None:
            return (
                "interactive masks from clicks and boxes, and classed pre-masks for new tasks from "
                f"{self.session.detector.name} boxes for the taxonomy's prompts"
            )
        return (
            "interactive masks from clicks and boxes only: no classed pre-mask can be made for a task no one "
            "has clicked on, because no detector is configured. Start the backend with --detector PATH (or "
            "DATASET_PIPELINE_DETECTOR): a local OWLv2 folder as transformers' save_pretrained writes it; "
            "the taxonomy's prompts and synonyms are its queries"
        )

    def health(self) -> dict[str, Any]:
        return {
            "status": "UP",
            "model_class": "dataset_pipeline.InteractiveSession",
            "model_version": self.model_version,
            "backend": self.session.backend.name,
            "device": self.session.backend.device,
            "batch_predictions": self.batch_predictions,
            "cache": {
                "images": len(self.session._embeddings),
                "hits": self.session.hits,
                "misses": self.session.misses,
            },
        }

    def setup(self, payload: dict[str, Any]) -> dict[str, Any]:
        config = parse_label_config(payload.get("schema") or payload.get("label_config") or "")
        self.fetcher.configure(payload.get("hostname"), payload.get("access_token"))
        unknown = [label for label in config.labels if label not in self.session.taxonomy.names]
        answer: dict[str, Any] = {
            "model_version": self.model_version,
            "batch_predictions": self.batch_predictions,
            "message": self.note(),
        }
        if unknown:
            answer["warnings"] = [
                f"labels {unknown} are not classes of {self.session.taxonomy.tag}: the detector never "
                "proposes them (clicks with them still get a mask)"
            ]
        return answer

    def webhook(self, payload: dict[str, Any]) -> dict[str, Any]:
        # Nothing trains here: the pipeline's baseline trains on reviewed, gated annotations.
        return {"status": "ok", "action": payload.get("action"), "trained": False}

    # -- predictions --------------------------------------------------------------------------
    def predict(self, payload: dict[str, Any]) -> dict[str, Any]:
        tasks = payload.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            raise BackendError(400, "'tasks' must be a non-empty list of Label Studio tasks")
        config = parse_label_config(payload.get("label_config") or "")
        params = payload.get("params") or {}
        context = params.get("context") if isinstance(params, dict) else None
        if context and context.get("result"):
            return {"results": [self._interactive(tasks[0], context["result"], config)]}
        return {"results": self._batch(tasks, config)}

    def _image_url(self, task: Any, config: LabelConfig) -> tuple[object, str]:
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise BackendError(400, "a task needs a 'data' object")
        task_id = task.get("id")
        url = task["data"].get(config.image_key)
        if not isinstance(url, str) or not url:
            raise BackendError(400, f"task {task_id}: data.{config.image_key} (the image) is missing")
        return task_id, url

    def _load(self, task_id: object, url: str):
        def load() -> np.ndarray:
            try:
                return self.fetcher.read(url)
            except ImageFetchError as exc:
                raise BackendError(exc.status, f"task {task_id}: {exc}") from None

        return load

    def _interactive(self, task: Any, context: list[Any], config: LabelConfig) -> dict[str, Any]:
        task_id, url = self._image_url(task, config)
        points: list[tuple[float, float]] = []
        point_labels: list[int] = []
        box = None
        label = None
        prompts = [
            c for c in context if isinstance(c, dict) and str(c.get("type", "")).lower() in SMART_TYPES
        ]
        if not prompts:
            raise BackendError(
                400, f"task {task_id}: the context has no keypointlabels or rectanglelabels result"
            )
        embedding_size = None
        for number, item in enumerate(prompts):
            kind = str(item["type"]).lower()
            value = item.get("value") or {}
            names = value.get(kind)
            if not isinstance(names, list) or not names:
                raise BackendError(
                    400, f"task {task_id}: context result {number}: value.{kind} names no label"
                )
            label = str(names[0])
            if label not in config.labels or label not in self.session.taxonomy.names:
                known = [n for n in config.labels if n in self.session.taxonomy.names]
                raise BackendError(
                    422,
                    f"task {task_id}: context result {number}: unknown label {label!r}; the project's "
                    f"BrushLabels classes of {self.session.taxonomy.tag} are {known}",
                )
            width, height = item.get("original_width"), item.get("original_height")
            if not (
                isinstance(width, (int, float))
                and isinstance(height, (int, float))
                and width > 0
                and height > 0
            ):
                if embedding_size is None:
                    _, embedding_size, _ = self.session.embedding(url, self._load(task_id, url))
                height, width = embedding_size
            try:
                x, y = float(value["x"]) * width / 100, float(value["y"]) * height / 100
                if kind == "rectanglelabels":
                    w, h = float(value["width"]) * width / 100, float(value["height"]) * height / 100
                    box = (x, y, x + w, y + h)
                else:
                    points.append((x, y))
                    point_labels.append(0 if item.get("is_positive") is False else 1)
            except (KeyError, TypeError, ValueError):
                raise BackendError(
                    400,
                    f"task {task_id}: context result {number}: value needs numeric x, y"
                    + (", width, height" if kind == "rectanglelabels" else ""),
                ) from None
        assert label is not None
        class_id = self.session.taxonomy.by_name(label).id
        try:
            answer = self.session.click(url, self._load(task_id, url), points, point_labels, box, class_id)
        except ValueError as exc:
            raise BackendError(422, f"task {task_id}: {exc}") from None
        log.info(
            "task %s: %s mask in %.0f ms (%s embedding)",
            task_id,
            label,
            answer.seconds * 1000,
            "cached" if answer.cached else "new",
        )
        result = self._brush(task_id, label, answer.mask, answer.score, config)
        return {
            "result": [result] if answer.mask.any() else [],
            "score": round(answer.score, 4),
            "model_version": self.model_version,
        }

    def _brush(
        self, task_id: object, label: str, mask: np.ndarray, score: float, config: LabelConfig
    ) -> dict[str, Any]:
        height, width = mask.shape
        return {
            "id": _result_id(task_id, label, mask),
            "from_name": config.brush_name,
            "to_name": config.image_name,
            "type": "brushlabels",
            "original_width": int(width),
            "original_height": int(height),
            "image_rotation": 0,
            "score": round(float(score), 4),
            "readonly": False,
            "value": {"format": "rle", "rle": mask_to_brush_rle(mask), "brushlabels": [label]},
        }

    def _batch(self, tasks: list[Any], config: LabelConfig) -> list[dict[str, Any]]:
        if not self.batch_predictions:
            # One empty prediction per task (Label Studio matches them by position); /setup says why.
            return [{"result": [], "score": 0.0, "model_version": self.model_version} for _ in tasks]
        located = [self._image_url(task, config) for task in tasks]
        found = []
        for start in range(0, len(located), BATCH_IMAGES):  # Label Studio may send a project's every task
            chunk = located[start : start + BATCH_IMAGES]
            found += self.session.classed_masks([self._load(task_id, url)() for task_id, url in chunk])
        predictions = []
        for (task_id, _), masks in zip(located, found, strict=True):
            results = []
            for mask in masks:
                name = self.session.taxonomy.by_id(mask.class_id).name
                if name in config.labels:
                    results.append(self._brush(task_id, name, mask.mask, mask.score, config))
            score = float(np.mean([m.score for m in masks])) if masks else 0.0
            predictions.append(
                {"result": results, "score": round(score, 4), "model_version": self.model_version}
            )
        return predictions


def build_backend(
    *,
    checkpoint: str | None = None,
    model_config: str | None = None,
    detector: str | None = None,
    device: str | None = None,
    taxonomy: str | None = None,
    label_studio_url: str | None = None,
    label_studio_token: str | None = None,
    s3_endpoint_url: str | None = None,
    cache_size: int = 16,
) -> LabelStudioMLBackend:
    """The backend over the pipeline's own pre-mask models (settings as the resource reads them)."""
    from dataset_pipeline.sam2_premasks.models import PremaskModels
    from dataset_pipeline.taxonomy import load_taxonomy

    models = PremaskModels.from_environment(
        checkpoint_path=checkpoint, model_config_name=model_config, detector_path=detector, device=device
    )
    session = InteractiveSession(
        models.backend(), load_taxonomy(taxonomy), detector=models.detector(), cache_size=cache_size
    )
    fetcher = ImageFetcher(
        label_studio_url, label_studio_token, s3_endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
    )
    return LabelStudioMLBackend(session, fetcher)


def create_app(backend: LabelStudioMLBackend, basic_auth: tuple[str, str] | None = None):
    """The Starlette app serving ``backend`` (uvicorn runs it; Dagster's webserver brings both)."""
    import asyncio
    import base64
    import hmac

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    def authorised(request: Request) -> bool:
        if basic_auth is None:
            return True
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return hmac.compare_digest(user, basic_auth[0]) and hmac.compare_digest(password, basic_auth[1])

    def endpoint(handler, needs_body: bool):
        async def call(request: Request) -> JSONResponse:
            if not authorised(request):
                return JSONResponse(
                    {
                        "error": "unauthorised: wrong or missing basic-auth user/password (the ML backend's "
                        "Authentication settings in Label Studio)"
                    },
                    status_code=401,
                    headers={"WWW-Authenticate": 'Basic realm="dataset_pipeline ML backend"'},
                )
            try:
                if needs_body:
                    try:
                        payload = await request.json()
                    except ValueError:
                        raise BackendError(400, "the request body is not JSON") from None
                    if not isinstance(payload, dict):
                        raise BackendError(400, "the request body must be a JSON object")
                    answer = await asyncio.to_thread(handler, payload)
                else:
                    answer = handler()
                return JSONResponse(answer, status_code=201 if handler == backend.webhook else 200)
            except BackendError as exc:
                log.warning("%s %s: %s", request.method, request.url.path, exc)
                return JSONResponse({"error": str(exc)}, status_code=exc.status)
            except Exception as exc:  # the server keeps serving; the reason goes back
                log.exception("%s %s failed", request.method, request.url.path)
                return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=500)

        return call

    routes = [
        Route("/", endpoint(backend.health, False), methods=["GET"]),
        Route("/health", endpoint(backend.health, False), methods=["GET"]),
        Route("/metrics", endpoint(lambda: {}, False), methods=["GET"]),
        Route("/setup", endpoint(backend.setup, True), methods=["POST"]),
        Route("/predict", endpoint(backend.predict, True), methods=["POST"]),
        Route("/webhook", endpoint(backend.webhook, True), methods=["POST"]),
    ]
    return Starlette(routes=routes)

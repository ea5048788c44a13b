"""The pipeline's pre-mask model as CVAT auto-annotation functions (cvat-sdk's ``cvat_sdk.auto_annotation``).

Two functions over one :class:`~dataset_pipeline.interactive.session.InteractiveSession`:

* a **detection function** (``spec`` with the taxonomy's labels as ``mask`` labels, and
  ``detect(context, image)``): the detector's boxes for each class's text prompts, through
  SAM 2 (or classical), as mask shapes — for ``cvat-cli task auto-annotate`` on a task,
  or a native function served by ``cvat-cli function create-native`` and ``run-agent``;
* an **interaction function** (``InteractionFunctionSpec``; ``preprocess_image`` computes the
  embedding an agent caches, ``detect`` answers the annotator's positive/negative points and
  box): SAM inside CVAT's interactor tool.

cvat-cli loads the module and, given ``-p`` parameters, calls :func:`create`::

    cvat-cli function create-native "dataset_pipeline SAM 2" \\
        --function-module dataset_pipeline.interactive.cvat \\
        -p checkpoint=str:/models/sam2.1_hiera_large.pt -p detector=str:/models/owlv2
    cvat-cli function create-native "dataset_pipeline clicks" \\
        --function-module dataset_pipeline.interactive.cvat -p mode=str:interactive

Without parameters the module itself is the detection function, configured from the
environment (DATASET_PIPELINE_SAM2_CHECKPOINT, DATASET_PIPELINE_DETECTOR, DATASET_PIPELINE_TAXONOMY).
Without a detector the detection function makes no shape and says why in its log, once.
"""

from __future__ import annotations

import logging
import os
from functools import cache

import numpy as np

from dataset_pipeline.interactive.session import InteractiveSession
from dataset_pipeline.taxonomy import Taxonomy, load_taxonomy

log = logging.getLogger(__name__)


def _label_spec(taxonomy: Taxonomy):
    import cvat_sdk.auto_annotation as cvataa

    return [cvataa.label_spec(c.name, c.id, type="mask") for c in taxonomy.foreground]


def _shape_points(mask: np.ndarray, polygon: bool) -> tuple[str, list[list[float]]]:
    """CVAT's encoding of one mask: its RLE over the tight box, or polygons when the task wants them."""
    from cvat_sdk.masks import encode_mask

    from dataset_pipeline.masks import mask_bbox, mask_to_polygons

    if polygon:
        polygons = mask_to_polygons(mask)
        return "polygon", [list(map(float, p)) for p in polygons if len(p) >= 6]
    x0, y0, x1, y1 = mask_bbox(mask)  # type: ignore[misc]
    return "mask", [encode_mask(mask, (x0, y0, x1, y1))]


class DetectionFunction:
    """Detector boxes → SAM 2 masks, one mask shape per detected object, with the taxonomy's labels."""

    def __init__(self, session: InteractiveSession) -> None:
        import cvat_sdk.auto_annotation as cvataa

        self.session = session
        self.spec = cvataa.DetectionFunctionSpec(labels=_label_spec(session.taxonomy))
        self._warned = False

    def detect(self, context, image) -> list:
        import cvat_sdk.auto_annotation as cvataa

        if self.session.detector is None:
            if not self._warned:
                from dataset_pipeline.annotation_tasks import NO_CLASSED_PREMASK

                log.warning("dataset_pipeline detection function: %s", NO_CLASSED_PREMASK)
                self._warned = True
            return []
        rgb = np.asarray(image.convert("RGB"))
        threshold = context.conf_threshold
        shapes = []
        for found in self.session.classed_masks([np.array(rgb)])[0]:
            if threshold is not None and found.detector_score < threshold:
                continue
            kind, encodings = _shape_points(found.mask, polygon=context.conv_mask_to_poly)
            make = cvataa.polygon if kind == "polygon" else cvataa.mask
            shapes += [make(found.class_id, points) for points in encodings]
        return shapes


class InteractionFunction:
    """SAM in CVAT's interactor: the image's embedding once (``preprocess_image``), then each prompt."""

    def __init__(self, session: InteractiveSession) -> None:
        import cvat_sdk.auto_annotation as cvataa

        self.session = session
        self.spec = cvataa.InteractionFunctionSpec(min_pos_points=0, min_neg_points=0, min_bounding_boxes=0)

    def preprocess_image(self, context, image) -> tuple[dict, tuple[int, int]]:
        rgb = np.array(image.convert("RGB"))
        return self.session.backend.embed(rgb), (int(rgb.shape[0]), int(rgb.shape[1]))

    def detect(self, context, pp_image, prompts) -> list:
        import cvat_sdk.auto_annotation as cvataa
        from cvat_sdk import models
        from cvat_sdk.masks import encode_mask

        from dataset_pipeline.masks import mask_bbox

        embedding, (height, width) = pp_image
        positive, negative = list(prompts.pos_points), list(prompts.neg_points)
        box = prompts.bounding_box
        flat_box = (box[0][0], box[0][1], box[1][0], box[1][1]) if box is not None else None
        if not positive and flat_box is None:
            return []  # nothing to segment yet (negative points alone name no object)
        points = [(float(x), float(y)) for x, y in positive + negative]
        labels = [1] * len(positive) + [0] * len(negative)
        predicted = self.session.backend.predict_interactive(embedding, points, labels, flat_box)
        bounds = mask_bbox(predicted.mask)
        if bounds is None:
            return []
        confidence = models.AttributeValRequest(
            spec_id=int(cvataa.InteractionResultAttributes.CONFIDENCE), value=f"{predicted.score:.4f}"
        )
        return [
            cvataa.InteractionResultShape(
                type="mask", points=encode_mask(predicted.mask, bounds), attributes=[confidence]
            )
        ]


def create(
    mode: str = "detection",
    checkpoint: str | None = None,
    config: str | None = None,
    detector: str | None = None,
    device: str | None = None,
    taxonomy: str | None = None,
    detector_threshold: float | None = None,
) -> DetectionFunction | InteractionFunction:
    """The function cvat-cli asks for with ``-p`` parameters (``mode``: detection or interactive)."""
    from dataset_pipeline.sam2_premasks.models import PremaskModels

    if mode not in ("detection", "interactive"):
        raise ValueError(f"mode must be 'detection' or 'interactive', got {mode!r}")
    models = PremaskModels.from_environment(
        checkpoint_path=checkpoint,
        model_config_name=config,
        detector_path=detector if mode == "detection" else "",
        device=device,
        detector_threshold=detector_threshold,
    )
    session = InteractiveSession(
        models.backend(),
        load_taxonomy(taxonomy or os.environ.get("DATASET_PIPELINE_TAXONOMY") or None),
        detector=models.detector() if mode == "detection" else None,
    )
    return DetectionFunction(session) if mode == "detection" else InteractionFunction(session)


@cache
def _module_function() -> DetectionFunction:
    function = create()
    assert isinstance(function, DetectionFunction)
    return function


def detect(context, image) -> list:
    """The module as a detection function (no ``-p`` parameters): settings from the environment."""
    return _module_function().detect(context, image)


def __getattr__(name: str):
    if name == "spec":  # the taxonomy's labels; importing the module loads no model
        import cvat_sdk.auto_annotation as cvataa

        taxonomy = load_taxonomy(os.environ.get("DATASET_PIPELINE_TAXONOMY") or None)
        return cvataa.DetectionFunctionSpec(labels=_label_spec(taxonomy))
    raise AttributeError(name)

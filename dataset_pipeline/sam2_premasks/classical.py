"""The classical backend, used when no SAM 2 checkpoint is configured.

Box or point prompts: OpenCV GrabCut in a window around the prompt (a colour-model
graph cut; the box marks probable foreground, the point a sure-foreground disk). Windows
larger than ``max_side`` are cut at reduced size (on the demo, 200 px gave the same mean
IoU as full size at 6x the speed); prompts run on ``workers`` threads (OpenCV releases the GIL).
No prompts: scikit-image's Felzenszwalb graph segmentation.

Neither gives a calibrated confidence, so the score is a stated proxy:
* box prompt: IoU between the prompt box and the tight box of the mask (a detector box
  hugs its object; a mask that leaked or collapsed no longer fits it);
* point prompt: 1.0 when the mask stays inside its window, 0.5 when it touches the
  window's edge (it probably leaked into the background);
* automatic: the segment's boundary contrast (mean Sobel magnitude on its outline,
  relative to the image's 90th percentile, clipped to 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dataset_pipeline.masks import mask_bbox
from dataset_pipeline.sam2_premasks.backends import PredictedMask, Prompt

POINT_WINDOW = 48


def box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """IoU of two ``(x0, y0, x1, y1)`` boxes.

    >>> box_iou((0, 0, 10, 10), (5, 0, 15, 10))
    0.3333333333333333
    """
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class ClassicalBackend:
    """Box/point-prompted GrabCut and prompt-free Felzenszwalb, on the CPU."""

    name = "classical"
    device = "cpu"

    def __init__(
        self, iterations: int = 2, margin: float = 0.15, max_side: int = 200, workers: int = 2, seed: int = 0
    ) -> None:
        import cv2

        self.iterations = iterations
        self.max_side = max_side
        self.workers = workers
        self.margin = margin
        self.seed = seed
        self.model_version = f"grabcut+felzenszwalb/opencv-{cv2.__version__}"

    def predict(self, images: list[np.ndarray], prompts: list[list[Prompt]]) -> list[list[PredictedMask]]:
        from concurrent.futures import ThreadPoolExecutor

        jobs = [
            (image, p) for image, image_prompts in zip(images, prompts, strict=True) for p in image_prompts
        ]
        with ThreadPoolExecutor(max_workers=max(1, self.workers)) as pool:  # OpenCV releases the GIL
            masks = iter(list(pool.map(lambda job: self._segment(*job), jobs)))
        return [[next(masks) for _ in image_prompts] for image_prompts in prompts]

    def embed(self, image: np.ndarray) -> dict:
        """No encoder here: an interactive session caches the decoded image itself."""
        return {"image": image}

    def predict_interactive(
        self,
        embedding: dict,
        points: list[tuple[float, float]],
        point_labels: list[int],
        box: tuple[float, float, float, float] | None = None,
        class_id: int | None = None,
    ) -> PredictedMask:
        """GrabCut for an annotator's box and/or clicks: positive clicks are sure foreground, negative
        ones sure background; the window is the box, or the region around the positive clicks."""
        positive = [p for p, label in zip(points, point_labels, strict=True) if label]
        negative = [p for p, label in zip(points, point_labels, strict=True) if not label]
        if box is None and not positive:
            raise ValueError("an interactive prompt needs a box or at least one positive click")
        if box is None and len(positive) > 1:
            xs, ys = [p[0] for p in positive], [p[1] for p in positive]
            half = POINT_WINDOW / 2
            box = (min(xs) - half, min(ys) - half, max(xs) + half, max(ys) + half)
        prompt = Prompt(class_id=class_id, box=box, point=None if box is not None else positive[0])
        return self._segment(embedding["image"], prompt, positive, negative)

    def _segment(
        self,
        image: np.ndarray,
        prompt: Prompt,
        sure_foreground: Sequence[tuple[float, float]] = (),
        sure_background: Sequence[tuple[float, float]] = (),
    ) -> PredictedMask:
        import cv2

        height, width = image.shape[:2]
        if prompt.box is not None:
            x0, y0, x1, y1 = prompt.box
            mx, my = (x1 - x0) * self.margin + 4, (y1 - y0) * self.margin + 4
        else:
            assert prompt.point is not None
            px, py = prompt.point
            x0, y0, x1, y1 = px - POINT_WINDOW, py - POINT_WINDOW, px + POINT_WINDOW, py + POINT_WINDOW
            mx = my = 0
        wx0, wy0 = int(max(0, np.floor(x0 - mx))), int(max(0, np.floor(y0 - my)))
        wx1, wy1 = int(min(width, np.ceil(x1 + mx))), int(min(height, np.ceil(y1 + my)))
        full = np.zeros((height, width), dtype=bool)
        if wx1 - wx0 < 3 or wy1 - wy0 < 3:
            return PredictedMask(full, 0.0, prompt.prompt_type, prompt.class_id)
        window = np.ascontiguousarray(image[wy0:wy1, wx0:wx1, ::-1])  # GrabCut wants BGR
        labels: np.ndarray = np.full(window.shape[:2], cv2.GC_BGD, np.uint8)
        if prompt.box is not None:
            bx0, by0 = int(max(0, round(x0) - wx0)), int(max(0, round(y0) - wy0))
            bx1, by1 = int(min(wx1 - wx0, round(x1) - wx0)), int(min(wy1 - wy0, round(y1) - wy0))
            labels[by0:by1, bx0:bx1] = cv2.GC_PR_FGD
        else:
            labels[:] = cv2.GC_PR_BGD
        clicks = [(p, cv2.GC_FGD) for p in ([prompt.point] if prompt.point is not None else [])]
        clicks += [(p, cv2.GC_FGD) for p in sure_foreground] + [(p, cv2.GC_BGD) for p in sure_background]
        for (px, py), value in clicks:
            cx, cy = int(round(px)) - wx0, int(round(py)) - wy0
            if 0 <= cx < labels.shape[1] and 0 <= cy < labels.shape[0]:
                cv2.circle(labels, (cx, cy), 2, value, -1)
        if not (labels == cv2.GC_PR_FGD).any() and not (labels == cv2.GC_FGD).any():
            return PredictedMask(full, 0.0, prompt.prompt_type, prompt.class_id)
        scale = self.max_side / max(window.shape[:2]) if self.max_side else 1.0
        work_window, work_labels = window, labels
        if scale < 1.0:  # large windows: cut at reduced size, then bring the labels back up
            size = (max(3, round(window.shape[1] * scale)), max(3, round(window.shape[0] * scale)))
            work_window = cv2.resize(window, size, interpolation=cv2.INTER_AREA)
            work_labels = cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST)
        cv2.setRNGSeed(self.seed)  # GrabCut's k-means start: deterministic masks
        background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        try:
            cv2.grabCut(
                work_window, work_labels, None, background, foreground, self.iterations, cv2.GC_INIT_WITH_MASK
            )
        except cv2.error:
            pass  # one colour class only (e.g. a flat window): keep the prompt's own region
        if scale < 1.0:
            labels = cv2.resize(
                work_labels, (window.shape[1], window.shape[0]), interpolation=cv2.INTER_NEAREST
            )
        local = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
        full[wy0:wy1, wx0:wx1] = local
        return PredictedMask(full, self._score(prompt, local, full), prompt.prompt_type, prompt.class_id)

    @staticmethod
    def _score(prompt: Prompt, local: np.ndarray, full: np.ndarray) -> float:
        tight = mask_bbox(full)
        if tight is None:
            return 0.0
        if prompt.box is not None:
            x0, y0, x1, y1 = (float(v) for v in tight)
            return round(box_iou((x0, y0, x1, y1), prompt.box), 4)
        edge = local[0].any() or local[-1].any() or local[:, 0].any() or local[:, -1].any()
        return 0.5 if edge else 1.0

    def generate_batch(self, images: list[np.ndarray]) -> list[list[PredictedMask]]:
        """``generate`` on ``workers`` threads (skimage's Felzenszwalb and OpenCV release the GIL:
        1.5x on 2 cores)."""
        from concurrent.futures import ThreadPoolExecutor

        if len(images) < 2 or self.workers < 2:
            return [self.generate(image) for image in images]
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(self.generate, images))

    def generate(self, image: np.ndarray, min_area: int = 400, max_masks: int = 64) -> list[PredictedMask]:
        import cv2
        from skimage.segmentation import felzenszwalb

        segments = felzenszwalb(image, scale=300, sigma=0.8, min_size=min_area // 2)
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
        gradient = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
        reference = float(np.percentile(gradient, 90)) or 1.0
        ids, counts = np.unique(segments, return_counts=True)
        masks = []
        for segment_id in ids[np.argsort(-counts)][:max_masks]:
            mask = segments == segment_id
            if mask.sum() < min_area:
                continue
            outline = mask & ~cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            contrast = float(gradient[outline].mean()) / reference if outline.any() else 0.0
            masks.append(PredictedMask(mask, round(min(1.0, contrast), 4), "auto", None))
        return masks

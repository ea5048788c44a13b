"""The GPU backend: sam2's video predictor, started from the reviewed keyframe masks.

The episode is cut at its keyframes into segments (keyframe, frames between, next keyframe);
each segment is one inference state: its frames written as the JPEG folder sam2 reads
(``<index>.jpg``), every id of both end keyframes added with ``add_new_mask`` on its frame, then
``propagate_in_video`` forward from the first and in reverse from the last. Both passes attend to
both keyframes' memories; their mask logits are averaged, and each pixel takes the object with
the highest logit where that logit is positive (sam2's own non-overlap rule). A segment is at
most the keyframe spacing long, so memory is bounded whatever the episode's length; the
video frames and the state are offloaded to the CPU (``offload_video_to_cpu``,
``offload_state_to_cpu``) on request, for long spacings at high resolution.

``checkpoint=None`` builds the model with random weights: for tests and speed benchmarks only.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from dataset_pipeline.episode_propagation.core import PropagatedFrame, check_episode

DEFAULT_VIDEO_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
#: JPEG quality of the frames handed to sam2 (it reads a JPEG folder only).
JPEG_QUALITY = 95


class Sam2VideoPropagator:
    """sam2's ``SAM2VideoPredictor`` over keyframe-bounded segments of an episode."""

    name = "sam2"

    def __init__(
        self,
        model_config: str = DEFAULT_VIDEO_CONFIG,
        checkpoint: str | None = None,
        device: str = "auto",
        *,
        bf16: bool = True,
        offload: bool = False,
        image_size: int | None = None,
        seed: int = 0,
    ) -> None:
        from dataset_pipeline.sam2_premasks.sam2 import (
            checkpoint_fingerprint,
            init_sam2_hydra,
            resolve_device,
        )

        init_sam2_hydra()
        import torch
        from hydra.utils import execution_whitelist
        from sam2.build_sam import build_sam2_video_predictor

        if checkpoint is not None and not Path(checkpoint).is_file():
            raise FileNotFoundError(f"SAM 2 checkpoint {checkpoint!r} does not exist")
        self.device = resolve_device(device)
        torch.manual_seed(seed)
        overrides = [f"++model.image_size={image_size}"] if image_size else []
        with execution_whitelist(["sam2.*"]):
            self.predictor = build_sam2_video_predictor(
                model_config, ckpt_path=checkpoint, device=self.device, hydra_overrides_extra=overrides
            )
        self.offload = offload
        self.autocast_bf16 = bf16 and self.device.startswith("cuda")
        weights = checkpoint_fingerprint(checkpoint) if checkpoint else "random-weights"
        self.model_version = f"{Path(model_config).stem}@{weights}"

    def _autocast(self):
        import torch

        if self.autocast_bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def propagate(
        self, frames: Sequence[np.ndarray], keyframes: Mapping[int, np.ndarray], episode: str = "episode"
    ) -> list[PropagatedFrame]:
        check_episode(frames, keyframes, episode)
        keys = sorted(keyframes)
        out: dict[int, PropagatedFrame] = {k: PropagatedFrame.keyframe(k, keyframes[k]) for k in keys}
        bounds = [(0, keys[0])] if keys[0] > 0 else []
        bounds += list(zip(keys, keys[1:], strict=False))
        bounds += [(keys[-1], len(frames) - 1)] if keys[-1] < len(frames) - 1 else []
        for start, end in bounds:
            if end - start < 2 and start in keyframes and end in keyframes:
                continue  # neighbouring keyframes: nothing between them
            for frame in self._segment(frames, keyframes, start, end):
                out[frame.index] = frame
        return [out[i] for i in range(len(frames))]

    def _segment(
        self, frames: Sequence[np.ndarray], keyframes: Mapping[int, np.ndarray], start: int, end: int
    ) -> list[PropagatedFrame]:
        import cv2
        import torch

        given = [k for k in (start, end) if k in keyframes]
        dtype = keyframes[given[0]].dtype
        ids = sorted({int(i) for k in given for i in np.unique(keyframes[k]) if i != 0})
        if not ids:  # nothing to carry: the frames between are background
            shape = keyframes[given[0]].shape
            return [
                PropagatedFrame(i, np.zeros(shape, dtype), tuple(given), min(abs(i - k) for k in given), 1.0)
                for i in range(start, end + 1)
                if i not in keyframes
            ]
        with tempfile.TemporaryDirectory(prefix="dp-sam2-video-") as folder:
            for position, index in enumerate(range(start, end + 1)):
                ok, jpeg = cv2.imencode(
                    ".jpg",
                    np.ascontiguousarray(frames[index])[..., ::-1],
                    [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY],
                )
                if not ok:
                    raise ValueError(f"frame {index} could not be encoded as JPEG for sam2")
                (Path(folder) / f"{position}.jpg").write_bytes(jpeg.tobytes())
            with torch.inference_mode(), self._autocast():
                state = self.predictor.init_state(
                    folder, offload_video_to_cpu=self.offload, offload_state_to_cpu=self.offload
                )
                for k in given:
                    for obj_id in ids:
                        self.predictor.add_new_mask(
                            state, frame_idx=k - start, obj_id=obj_id, mask=keyframes[k] == obj_id
                        )
                logits: dict[int, torch.Tensor] = {}
                passes: dict[int, int] = {}
                for reverse in (False, True):
                    first = (end if reverse else start) - start
                    for position, obj_ids, masks in self.predictor.propagate_in_video(
                        state, start_frame_idx=first, reverse=reverse
                    ):
                        if start + position in keyframes:
                            continue
                        order = [obj_ids.index(i) for i in ids]
                        value = masks[order, 0].float().cpu()
                        logits[position] = logits[position] + value if position in logits else value
                        passes[position] = passes.get(position, 0) + 1
                self.predictor.reset_state(state)
        result = []
        for position, total in sorted(logits.items()):
            index = start + position
            mean = (total / passes[position]).numpy()
            best = mean.argmax(0)
            top = np.take_along_axis(mean, best[None], 0)[0]
            labels = np.where(top > 0, np.asarray(ids)[best], 0).astype(dtype)
            probability = 1.0 / (1.0 + np.exp(-top))
            per_id = {
                obj: round(float(probability[labels == obj].mean()), 4)
                for obj in ids
                if (labels == obj).any()
            }
            confidence = round(float(probability[labels != 0].mean()), 4) if (labels != 0).any() else 1.0
            result.append(
                PropagatedFrame(
                    index, labels, tuple(given), min(abs(index - k) for k in given), confidence, per_id
                )
            )
        return result

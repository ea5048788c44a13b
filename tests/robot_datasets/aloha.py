"""ALOHA / ACT episodes as its recorder (``record_episodes.py``) writes them, with h5py.

``/observations/images/<cam>`` (T, H, W, 3) uint8 chunked a frame per chunk, or with
``compress`` the JPEG bytes of each frame zero-padded to the longest (T, padded) plus
``/compress_len``; ``/observations/qpos``, ``qvel``, ``effort`` (T, 14) and ``/action`` (T, 14);
root attributes ``sim`` and ``compress``; one ``episode_<n>.hdf5`` per episode.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import h5py
import numpy as np

from tests.robot_datasets.conftest import drawn_frame

CAMERAS = ("cam_high", "cam_left_wrist")


def write_aloha(folder: Path, episodes: int = 2, frames: int = 10, *, compress: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for episode in range(episodes):
        images = {
            cam: np.stack(
                [drawn_frame(episode, f) if c == 0 else drawn_frame(episode, f)[::-1] for f in range(frames)]
            )
            for c, cam in enumerate(CAMERAS)
        }
        with h5py.File(folder / f"episode_{episode}.hdf5", "w", rdcc_nbytes=1024**2 * 2) as root:
            root.attrs["sim"] = False
            root.attrs["compress"] = compress
            obs = root.create_group("observations")
            image = obs.create_group("images")
            if compress:
                encoded = {c: [cv2.imencode(".jpg", f[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 50])[1] for f in v]
                           for c, v in images.items()}  # fmt: skip
                padded = max(len(e) for v in encoded.values() for e in v)
                for cam, rows in encoded.items():
                    data = np.zeros((frames, padded), np.uint8)
                    for i, row in enumerate(rows):
                        data[i, : len(row)] = row.ravel()
                    image.create_dataset(cam, data=data, chunks=(1, padded))
                root.create_dataset(
                    "compress_len", data=np.array([[len(e) for e in encoded[c]] for c in CAMERAS])
                )
            else:
                for cam, data in images.items():
                    image.create_dataset(cam, data=data, dtype="uint8", chunks=(1, *data.shape[1:]))
            for name in ("qpos", "qvel", "effort"):
                obs.create_dataset(name, data=rng.random((frames, 14)))
            root.create_dataset("action", data=rng.random((frames, 14)))
    return folder

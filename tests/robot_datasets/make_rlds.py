"""Write a small RLDS dataset with tensorflow-datasets' own builder (run in .tfds-venv).

``python make_rlds.py OUT EPISODES STEPS HEIGHT WIDTH``: Open X-Embodiment's step layout
(``observation/image``, ``observation/wrist_image`` JPEG, ``observation/state``, ``action``,
``language_instruction``, ``is_first`` / ``is_last`` / ``is_terminal``, ``reward``), two splits.
"""

import sys

import numpy as np


def main(out: str, episodes: int, steps: int, height: int, width: int) -> None:
    import tensorflow_datasets as tfds

    tfds.disable_progress_bar()
    features = tfds.features.FeaturesDict(
        {
            "steps": tfds.features.Dataset(
                {
                    "observation": tfds.features.FeaturesDict(
                        {
                            "image": tfds.features.Image(shape=(height, width, 3), encoding_format="png"),
                            "wrist_image": tfds.features.Image(
                                shape=(height, width, 3), encoding_format="jpeg"
                            ),
                            "state": tfds.features.Tensor(shape=(7,), dtype=np.float32),
                        }
                    ),
                    "action": tfds.features.Tensor(shape=(7,), dtype=np.float32),
                    "reward": tfds.features.Scalar(dtype=np.float32),
                    "language_instruction": tfds.features.Text(),
                    "is_first": tfds.features.Scalar(dtype=np.bool_),
                    "is_last": tfds.features.Scalar(dtype=np.bool_),
                    "is_terminal": tfds.features.Scalar(dtype=np.bool_),
                }
            ),
            "episode_metadata": tfds.features.FeaturesDict({"file_path": tfds.features.Text()}),
        }
    )
    rng = np.random.default_rng(0)
    splits = {"train": [], "val": []}
    for e in range(episodes):
        rows = []
        for s in range(steps):
            image = np.zeros((height, width, 3), np.uint8)
            image[:, : (s * 7 + e * 11) % width] = (40 * e % 255, 90, 200)
            rows.append(
                {
                    "observation": {
                        "image": image,
                        "wrist_image": image[::-1].copy(),
                        "state": rng.random(7, dtype=np.float32),
                    },
                    "action": rng.random(7, dtype=np.float32),
                    "reward": float(s == steps - 1),
                    "language_instruction": f"put the cup {e % 2} in the sink",
                    "is_first": s == 0,
                    "is_last": s == steps - 1,
                    "is_terminal": s == steps - 1,
                }
            )
        split = "val" if e == episodes - 1 else "train"
        splits[split].append((f"ep{e}", {"steps": rows, "episode_metadata": {"file_path": f"raw/ep{e}.npy"}}))
    tfds.dataset_builders.store_as_tfds_dataset(
        name="toy_rlds",
        version="1.0.0",
        features=features,
        split_datasets=splits,
        data_dir=out,
        disable_shuffling=True,
    )


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:6]))

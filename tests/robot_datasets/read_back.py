"""Read a written dataset back with its own library, independently of the pipeline's checks.

Run by the tests in the library's environment:
``python read_back.py lerobot ROOT REPO_ID OUT.npz`` (``LeRobotDataset`` item by item, videos
decoded) or ``python read_back.py rlds DIR OUT.npz`` (``tfds.builder_from_directory``). Writes
per frame the episode and frame index, the segmentation and its flag, and the numeric features.
"""

import sys

import numpy as np


def lerobot(root: str, repo_id: str, out: str) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    dataset = LeRobotDataset(repo_id, root=root, video_backend="pyav")
    columns: dict[str, list] = {}
    for i in range(len(dataset)):
        item = dataset[i]
        for key, value in item.items():
            if key.startswith(
                (
                    "observation.segmentation",
                    "observation.state",
                    "action",
                    "episode_index",
                    "frame_index",
                    "timestamp",
                )
            ):
                columns.setdefault(key, []).append(np.asarray(value))
        for key in dataset.meta.camera_keys:
            columns.setdefault(f"{key}.shape", []).append(np.asarray(item[key].shape))
    np.savez(
        out, features=np.array(sorted(dataset.meta.features)), **{k: np.stack(v) for k, v in columns.items()}
    )


def rlds(directory: str, out: str) -> None:
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(directory)
    columns: dict[str, list] = {}
    for split in sorted(builder.info.splits):
        for number, episode in enumerate(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False))):
            for step_number, step in enumerate(episode["steps"]):
                columns.setdefault("split", []).append(split)
                columns.setdefault("episode", []).append(number)
                columns.setdefault("step", []).append(step_number)
                for key, value in step["observation"].items():
                    columns.setdefault(f"observation/{key}", []).append(np.asarray(value))
                for key in (
                    "action",
                    "reward",
                    "is_first",
                    "is_last",
                    "frame_index",
                    "timestamp",
                    "image_id",
                ):
                    if key in step:
                        columns.setdefault(key, []).append(np.asarray(step[key]))
    np.savez(
        out,
        features=np.array(list(builder.info.features["steps"]["observation"].keys())),
        **{k: np.stack(v) for k, v in columns.items()},
    )


if __name__ == "__main__":
    if sys.argv[1] == "lerobot":
        lerobot(*sys.argv[2:5])
    else:
        rlds(*sys.argv[2:4])

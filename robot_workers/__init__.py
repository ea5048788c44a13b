"""Code that runs in the robot-dataset libraries' own environments, not in the project's.

lerobot 0.4.4 pins torch 2.10 and tensorflow-cpu pins protobuf and h5py, so they live in venvs of
their own (``.lerobot-venv``, ``.tfds-venv``; ``scripts/robot_envs.sh``). These modules are run
there with ``python -m robot_workers.<name> COMMAND REQUEST.json`` (the project folder on
``PYTHONPATH``) by :func:`dataset_pipeline.formats.environments.run_worker` - a plain
subprocess, or a Dagster Pipes session from an asset. They import the standard library, NumPy,
their environment's library and ``dagster_pipes``, never ``dataset_pipeline``: everything they
need comes in the request.

* ``lerobot_worker.py`` - write-back, its check, and a dataset written with lerobot's recorder;
* ``tfds_worker.py`` - RLDS / TFDS: describe, frames, write-back, export, check;
* ``protocol.py`` - the request / result protocol both serve.
"""

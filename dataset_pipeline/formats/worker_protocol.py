"""The one protocol of the workers that run in the other environments (``*/worker.py``).

Standard library only: this module is imported by those environments' Pythons, which have
none of the project's dependencies. A worker is run as ``python -m
dataset_pipeline.formats.<format>.worker COMMAND REQUEST.json``; it reads the JSON request,
and answers one JSON result, printed as the last stdout line and, when Dagster Pipes launched
it (``dagster-pipes`` is installed in those environments), reported as a Pipes custom message.
A refusal (:class:`Problem`) is a result with ``ok: false`` and the message, never a traceback.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path

RESULT_PREFIX = "RESULT "
#: (command, environment variables) -> the worker's result. The default runs a subprocess
#: (:func:`dataset_pipeline.formats.environments.subprocess_launcher`); an asset's runs it
#: through Dagster Pipes.
Launcher = Callable[[list[str], dict[str, str]], dict]


def mask_file(episode: int, camera: str) -> str:
    """The file of one episode's class maps and flags for one camera, as the workers read them.

    >>> mask_file(3, "observations/images/cam_high")
    'episode_3_observations_images_cam_high.npz'
    """
    return f"episode_{episode}_{camera.replace('/', '_')}.npz"


class Problem(Exception):
    """Input the worker refuses; the message names dataset, episode, frame and field."""


def serve(commands: Mapping[str, Callable[[dict], dict]], argv: list[str]) -> int:
    command, request_file = argv[0], argv[1]
    request = json.loads(Path(request_file).read_text(encoding="utf-8"))
    pipes = None
    if os.environ.get("DAGSTER_PIPES_CONTEXT"):  # launched by a Pipes client
        from dagster_pipes import open_dagster_pipes

        pipes = open_dagster_pipes()
    try:
        try:
            result = {"ok": True, **commands[command](request)}
        except Problem as exc:
            result = {"ok": False, "error": str(exc)}
        # Under Pipes a refusal is a result like any other (the launcher raises it with its
        # message); a non-zero exit would make Dagster report a traceback instead.
        if pipes is not None:
            pipes.report_custom_message(result)
        print(RESULT_PREFIX + json.dumps(result), flush=True)
    finally:
        if pipes is not None:
            pipes.close()
    return 0 if result["ok"] or pipes is not None else 3

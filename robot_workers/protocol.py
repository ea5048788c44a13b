"""The one protocol of the workers: a JSON request file in, a JSON result file out.

``python -m robot_workers.<name> COMMAND REQUEST.json``: the request names a ``result_file``;
the worker writes ``{"ok": true, ...}`` or, for input it refuses (:class:`Problem`), ``{"ok":
false, "error": "..."}`` there - a refusal is a result, never a traceback - and exits 0. When a
Dagster Pipes client launched it (``DAGSTER_PIPES_CONTEXT`` is set; ``dagster-pipes`` is
installed in the workers' environments), the session is opened, the worker's progress goes to
the run's log and the result is reported as a Pipes custom message too. Standard library only.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path


class Problem(Exception):
    """Input the worker refuses; the message names dataset, episode, frame and field."""


def load_masks(request: dict, episode: int, camera: str, length: int, shape: list[int]):
    """(class maps (T, H, W) uint8, flags (T,) uint8) of one episode and camera, from the file
    the request names for them; zeros and flag 0 (none) for an episode nobody labelled."""
    import numpy as np

    name = (request.get("mask_files") or {}).get(f"{episode}:{camera}")
    if not name:
        return np.zeros((length, *shape), np.uint8), np.zeros(length, np.uint8)
    path = Path(request["masks"]) / name
    with np.load(path) as data:
        masks, sources = data["masks"], data["sources"]
    if masks.shape != (length, *shape):
        raise Problem(
            f"{path}: class maps of shape {masks.shape}, episode {episode} needs {(length, *shape)}"
        )
    return masks, sources.astype(np.uint8)


def serve(commands: Mapping[str, Callable[[dict], dict]], argv: list[str]) -> int:
    command, request_file = argv[0], argv[1]
    request = json.loads(Path(request_file).read_text(encoding="utf-8"))
    pipes = None
    if os.environ.get("DAGSTER_PIPES_CONTEXT"):  # launched by a Pipes client
        from dagster_pipes import open_dagster_pipes

        pipes = open_dagster_pipes()
    try:
        if pipes is not None:
            pipes.log.info(f"{command} in {sys.executable}")
        try:
            result = {"ok": True, **commands[command](request)}
        except Problem as exc:
            result = {"ok": False, "error": str(exc)}
        Path(request["result_file"]).write_text(json.dumps(result), encoding="utf-8")
        if pipes is not None:
            pipes.report_custom_message(result)
    finally:
        if pipes is not None:
            pipes.close()
    return 0

"""A live Label Studio server: push a batch's tasks with pre-mask predictions, pull its reviews.

Talks to Label Studio's REST API with an API token (``Authorization: Token …``). One project per
taxonomy version (title ``<prefix> <taxonomy tag>``); its labeling config is generated from the
taxonomy, and an existing project whose labels differ is refused rather than written into.
Tasks carry our ``image_id`` and ``batch`` in ``data``, which is how a push stays idempotent
(images already in the project are not imported again) and how reviews are split by batch.
Reviews are pulled with a *snapshot* export with full predictions (the quick export lists
predictions as ids only and drops unannotated tasks).

Errors are :class:`LabelStudioError` naming the server and what is wrong; the token never
appears in a message.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from defusedxml import ElementTree as SafeET

from dataset_pipeline.formats.label_studio import tasks as label_studio
from dataset_pipeline.taxonomy import Taxonomy


class LabelStudioError(RuntimeError):
    """A Label Studio call failed; the message names the server and the reason (never the token)."""


def project_title(prefix: str, taxonomy: Taxonomy) -> str:
    """``<prefix> <taxonomy tag>``: one project per taxonomy version.

    >>> from dataset_pipeline.taxonomy import load_taxonomy
    >>> project_title("robot-seg", load_taxonomy())
    'robot-seg tabletop_manipulation@v1'
    """
    return f"{prefix} {taxonomy.tag}"


def config_labels(label_config: str) -> set[str]:
    """The label values of a labeling config's BrushLabels / PolygonLabels."""
    root = SafeET.fromstring(label_config, forbid_dtd=True)
    return {
        label.get("value", "")
        for tag in ("BrushLabels", "PolygonLabels")
        for group in root.iter(tag)
        for label in group.iter("Label")
    }


@dataclass
class LabelStudioClient:
    base_url: str
    token: str = field(repr=False)
    timeout_s: float = 60.0

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests

        url = self.base_url.rstrip("/") + path
        try:
            response = requests.request(
                method,
                url,
                headers={"Authorization": f"Token {self.token}"},
                timeout=self.timeout_s,
                **kwargs,
            )
        except requests.RequestException as exc:
            raise LabelStudioError(
                f"cannot reach Label Studio at {self.base_url} ({type(exc).__name__}); is the server up and the URL right?"
            ) from None
        if response.status_code in (401, 403):
            raise LabelStudioError(
                f"Label Studio at {self.base_url} refused the API token (HTTP {response.status_code} on {path}); "
                "check the token (Account & Settings → Access Token; legacy tokens must be enabled)"
            )
        if response.status_code >= 400:
            raise LabelStudioError(
                f"Label Studio at {self.base_url}: {method} {path} failed with HTTP {response.status_code}: "
                f"{response.text[:300]}"
            )
        return response.json() if response.content else None

    # -- projects and tasks ------------------------------------------------------------------

    def find_project(self, title: str) -> dict | None:
        page = self._request("GET", "/api/projects", params={"title": title, "page_size": 1000})
        projects = page.get("results", page) if isinstance(page, dict) else page
        return next((p for p in projects if p.get("title") == title), None)

    def ensure_project(self, title: str, taxonomy: Taxonomy) -> int:
        """The project's id; created with the taxonomy's labeling config when missing. A project of that
        title whose labels differ from the taxonomy is refused (nothing is imported into it)."""
        wanted = {c.name for c in taxonomy.foreground}
        project = self.find_project(title)
        if project is None:
            created = self._request(
                "POST",
                "/api/projects",
                json={"title": title, "label_config": label_studio.labeling_config(taxonomy)},
            )
            return int(created["id"])
        labels = config_labels(project.get("label_config") or "<View/>")
        if labels != wanted:
            raise LabelStudioError(
                f"Label Studio at {self.base_url}: project {title!r} (id {project['id']}) has labels that do not "
                f"match taxonomy {taxonomy.tag}: missing {sorted(wanted - labels)}, unknown {sorted(labels - wanted)}"
            )
        return int(project["id"])

    def tasks(self, project_id: int) -> list[dict]:
        """Every task of the project (id, data, annotation counts, updated_at)."""
        out, page = [], 1
        while True:
            batch = self._request(
                "GET",
                "/api/tasks",
                params={"project": project_id, "page": page, "page_size": 500, "fields": "all"},
            )
            tasks = batch.get("tasks", []) if isinstance(batch, dict) else batch
            out += tasks
            total = batch.get("total", len(out)) if isinstance(batch, dict) else len(out)
            if not tasks or len(out) >= total:
                return out
            page += 1

    def users(self) -> dict[int, dict]:
        """User id -> {id, email, username}: exports name annotators by id only."""
        listed = self._request("GET", "/api/users")
        users = listed.get("results", listed) if isinstance(listed, dict) else listed
        return {
            int(u["id"]): {"id": u["id"], "email": u.get("email"), "username": u.get("username")}
            for u in users
        }

    def import_tasks(self, project_id: int, tasks: list[dict]) -> None:
        if tasks:
            self._request("POST", f"/api/projects/{project_id}/import", json=tasks)

    def views(self, project_id: int) -> list[dict]:
        """The project's Data Manager views (saved filters / tabs)."""
        listed = self._request("GET", "/api/dm/views/", params={"project": project_id})
        return listed.get("results", listed) if isinstance(listed, dict) else listed

    def ensure_views(self, project_id: int, views: list[dict]) -> dict[str, int]:
        """Create or update one saved filter per view body (``{"data": {"title", "filters"}}``), matched
        by title, so a grown sample updates its tab instead of adding one; title -> view id."""
        existing = {v.get("data", {}).get("title"): v for v in self.views(project_id)}
        out = {}
        for view in views:
            title = view["data"]["title"]
            body = {"project": project_id, "data": view["data"]}
            if title in existing:
                done = self._request("PATCH", f"/api/dm/views/{existing[title]['id']}/", json=body)
            else:
                done = self._request("POST", "/api/dm/views/", json=body)
            out[title] = int(done["id"])
        return out

    def view_tasks(self, view_id: int, project_id: int) -> list[dict]:
        """The tasks a view's filter selects (what an annotator opening the tab sees)."""
        listed = self._request(
            "GET", "/api/tasks", params={"view": view_id, "project": project_id, "page_size": 1000}
        )
        return listed.get("tasks", []) if isinstance(listed, dict) else listed

    def snapshot_export(self, project_id: int) -> list[dict]:
        """All tasks with annotations and *full* predictions (a snapshot export, synchronous without Redis)."""
        created = self._request(
            "POST",
            f"/api/projects/{project_id}/exports/",
            json={"serialization_options": {"predictions": {"only_id": False}}},
        )
        return self._request(
            "GET",
            f"/api/projects/{project_id}/exports/{created['id']}/download",
            params={"exportType": "JSON"},
        )


@dataclass
class PushResult:
    project_id: int
    imported: int
    already_there: int
    task_ids: dict[str, int]  # image_id -> Label Studio task id


def push_tasks(client: LabelStudioClient, title: str, taxonomy: Taxonomy, tasks: list[dict]) -> PushResult:
    """Import the tasks whose image is not in the project yet; map every image to its task id."""
    project_id = client.ensure_project(title, taxonomy)
    existing = {t["data"].get("image_id"): t["id"] for t in client.tasks(project_id)}
    new = [t for t in tasks if t["data"]["image_id"] not in existing]
    client.import_tasks(project_id, new)
    if new:
        existing = {t["data"].get("image_id"): t["id"] for t in client.tasks(project_id)}
    wanted = {t["data"]["image_id"] for t in tasks}
    return PushResult(
        project_id, len(new), len(tasks) - len(new), {k: int(v) for k, v in existing.items() if k in wanted}
    )


def review_signatures(tasks: list[dict]) -> dict[str, str]:
    """batch -> a digest of its annotated tasks' (id, annotation count, updated_at): changes whenever an
    annotation of the batch is completed, updated or deleted."""
    per_batch: dict[str, list] = {}
    for task in tasks:
        batch = (task.get("data") or {}).get("batch")
        if not batch:
            continue
        count = int(task.get("total_annotations") or 0) + int(task.get("cancelled_annotations") or 0)
        per_batch.setdefault(batch, []).append((task["id"], count, str(task.get("updated_at"))))
    return {
        batch: hashlib.sha1(json.dumps(sorted(items)).encode()).hexdigest()[:16]
        for batch, items in per_batch.items()
        if any(count for _, count, _ in items)
    }


def batch_export(export: list[dict], batch: str, users: dict[int, dict] | None = None) -> list[dict]:
    """The batch's annotated tasks of a snapshot export, each annotation's ``completed_by`` id
    replaced by the user record (so the annotator is an email, not a number)."""
    users = users or {}
    out = []
    for task in export:
        if (task.get("data") or {}).get("batch") != batch or not task.get("annotations"):
            continue
        annotations = [
            {**a, "completed_by": users.get(a.get("completed_by"), a.get("completed_by"))}
            for a in task["annotations"]
        ]
        out.append({**task, "annotations": annotations})
    return out

"""The live Label Studio connector against a real Label Studio 1.23.2 server on 127.0.0.1.

The server runs from its own virtual environment (`.ls-venv`, made by `.ci/run`; without it these
tests skip saying how to make it), on a free port, with a fresh data directory; it is stopped by its PID in
teardown, also when a test fails. Facts about the server: ../shared/LABEL_STUDIO.md.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dagster import DagsterInstance, build_sensor_context, materialize

from assets.partitions import capture_batches
from assets.qc_assignments import qc_assignments
from assets.reviewed_annotations import reviewed_annotations
from dataset_pipeline.annotation_tasks import read_work_plan
from dataset_pipeline.definitions.environment import build_resources
from dataset_pipeline.definitions.jobs import PER_BATCH_STAGES
from dataset_pipeline.definitions.sensors import label_studio_review_sensor
from dataset_pipeline.formats.label_studio import codec as ls_codec
from dataset_pipeline.formats.label_studio import tasks as ls_tasks
from dataset_pipeline.formats.label_studio.client import LabelStudioClient, LabelStudioError, project_title
from dataset_pipeline.layout import annotations_key
from dataset_pipeline.masks import decode_mask
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.taxonomy import load_taxonomy
from resources import AnnotationTeam, AnnotationToolsResource, LabelStudioResource, TaxonomyResource
from tests.conftest import copy_upload, require_service, stage_assets

ROOT = Path(__file__).resolve().parents[2]
LS_VENV = ROOT / ".ls-venv"
LS_VERSION = "1.23.2"
TOKEN = "dp-test-token-0123456789"
BATCH = "ls-b1"


def _label_studio_binary() -> Path:
    binary = LS_VENV / "bin" / "label-studio"
    require_service(
        binary.exists(),
        f"Label Studio {LS_VERSION} (its own venv {LS_VENV.name})",
        f"make it with `python3.11 -m venv {LS_VENV.name} && {LS_VENV.name}/bin/pip install "
        f"label-studio=={LS_VERSION}` (~2 min; .ci/run does)",
    )
    return binary


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    """(base URL, document root) of a running Label Studio; stopped by PID afterwards."""
    binary = _label_studio_binary()
    base = tmp_path_factory.mktemp("label-studio")
    documents = base / "documents"
    documents.mkdir()
    port = _free_port()
    env = {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(base / "data"),
        "COLLECT_ANALYTICS": "false",
        "LATEST_VERSION_CHECK": "false",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        "LOCAL_FILES_SERVING_ENABLED": "true",
        "LOCAL_FILES_DOCUMENT_ROOT": str(documents),
        # the ML backend under test listens on 127.0.0.1, which Label Studio refuses by default
        "ML_BLOCK_LOCAL_IP": "false",
        "SSRF_PROTECTION_ENABLED": "false",
    }
    log = (base / "server.log").open("w")
    server = subprocess.Popen(
        [
            str(binary),
            "start",
            "--no-browser",
            "--internal-host",
            "127.0.0.1",
            "-p",
            str(port),
            "--username",
            "admin@example.com",
            "--password",
            "dp-test-password",
            "--user-token",
            TOKEN,
            "--enable-legacy-api-token",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=base,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if server.poll() is not None:
                pytest.fail(f"Label Studio exited ({server.returncode}); see {base / 'server.log'}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if b"UP" in response.read():
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"Label Studio did not come up in 300 s; see {base / 'server.log'}")
            time.sleep(1)
        yield url, documents
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


TEAM = ("ann_a@example.com", "ann_b@example.com", "ann_c@example.com")


def _resources(store: DatasetStore, url: str, documents: Path, token: str = TOKEN) -> dict:
    return build_resources(store.root) | {
        "annotation_tools": AnnotationToolsResource(
            image_url_mode="local-files", local_files_document_root=str(documents)
        ),
        "label_studio": LabelStudioResource(enabled=True, url=url, api_token=token, project_prefix="dp-test"),
        "annotation_team": AnnotationTeam(annotators=list(TEAM)),
    }


def test_push_annotate_pull_round_trip_without_duplicates(label_studio, demo_batch):
    url, documents = label_studio
    source, upload = demo_batch
    store = DatasetStore(str(documents / "store"))
    copy_upload(source, upload.batch, store, BATCH)
    resources = _resources(store, url, documents)
    taxonomy = load_taxonomy()
    client = LabelStudioClient(url, TOKEN)
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(capture_batches.name, [BATCH])
        pushed = materialize(
            stage_assets(PER_BATCH_STAGES), partition_key=BATCH, instance=instance, resources=resources
        )
        assert pushed.success
        ids = store.read_parquet(f"tables/label_studio/{BATCH}.parquet")
        project_id = int(ids.project_id.iloc[0])
        sent = {
            t["data"]["image_id"]: t
            for t in json.loads(store.read_bytes(f"tasks/{BATCH}/label_studio/tasks.json"))
        }

        def tasks_in_label_studio() -> dict[str, dict]:
            return {t["data"]["image_id"]: t for t in client.tasks(project_id)}

        there = tasks_in_label_studio()
        assert set(there) == set(sent) == set(ids.image_id) and len(there) == 16
        for (
            image_id,
            task,
        ) in sent.items():  # the predictions Label Studio holds are what we sent, bit for bit
            held = there[image_id]["predictions"]
            assert len(held) == len(task.get("predictions", []))
            for ours, theirs in zip(task.get("predictions", []), held, strict=True):
                for a, b in zip(ours["result"], theirs["result"], strict=True):
                    h, w = a["original_height"], a["original_width"]
                    assert np.array_equal(
                        ls_codec.brush_rle_to_mask(a["value"]["rle"], h, w),
                        ls_codec.brush_rle_to_mask(b["value"]["rle"], h, w),
                    )
        again = materialize(
            stage_assets(PER_BATCH_STAGES[-1:]), partition_key=BATCH, instance=instance, resources=resources
        )
        assert again.success
        assert {k: len(v["predictions"]) for k, v in tasks_in_label_studio().items()} == {
            k: len(v["predictions"]) for k, v in there.items()
        }  # re-materializing duplicated neither tasks nor predictions

        # Each annotator's work is a saved filter in the project showing exactly their planned
        # images (the gold ones are in both of the pair's); the second run updated, not added, them.
        plan = read_work_plan(store, BATCH)
        assert plan is not None
        work = [v for v in client.views(project_id) if v["data"]["title"].startswith("Labelling ")]
        assert len(work) == plan.annotator_id.nunique() == len(TEAM)
        for view in work:
            person = view["data"]["title"].rsplit(": ", 1)[1]
            shown = {t["data"]["image_id"] for t in client.view_tasks(view["id"], project_id)}
            assert shown == set(plan.image_id[plan.annotator_id == person]), person

        # A person annotates three tasks: accepts a prediction, edits one, draws a new polygon.
        with_predictions = [k for k, v in there.items() if v["predictions"]]
        accepted_id, edited_id, drawn_id = sorted(with_predictions)[:3]
        accepted = there[accepted_id]["predictions"][0]["result"]
        first = there[edited_id]["predictions"][0]["result"][0]
        h, w = first["original_height"], first["original_width"]
        edited_mask = ls_codec.brush_rle_to_mask(first["value"]["rle"], h, w).copy()
        ys, xs = np.nonzero(edited_mask)
        edited_mask[ys.min() : ys.min() + max(1, (ys.max() - ys.min()) // 4), :] = (
            False  # trims its top quarter
        )
        edited = [
            {
                **first,
                "origin": "prediction-changed",
                "value": {**first["value"], "rle": ls_codec.mask_to_brush_rle(edited_mask)},
            }
        ]
        polygon = [
            {
                "id": "drawn-1",
                "type": "polygonlabels",
                "from_name": ls_tasks.POLYGON_FROM_NAME,
                "to_name": ls_tasks.IMAGE_TO_NAME,
                "original_width": w,
                "original_height": h,
                "origin": "manual",
                "value": {"points": [[10, 10], [40, 10], [40, 35], [10, 35]], "polygonlabels": ["container"]},
            }
        ]
        for image_id, result, seconds in (
            (accepted_id, accepted, 20.0),
            (edited_id, edited, 45.0),
            (drawn_id, polygon, 30.0),
        ):
            client._request(
                "POST",
                f"/api/tasks/{there[image_id]['id']}/annotations",
                json={"result": result, "lead_time": seconds},
            )

        sensor_resources = {"label_studio": resources["label_studio"], "taxonomy": TaxonomyResource()}
        tick = label_studio_review_sensor(build_sensor_context(instance=instance, resources=sensor_resources))
        assert [r.partition_key for r in tick.run_requests] == [BATCH]
        reviewed = materialize(
            [reviewed_annotations], partition_key=BATCH, instance=instance, resources=resources
        )
        assert reviewed.success
        table = store.read_parquet(annotations_key(BATCH))
        assert len(table) == len(accepted) + 2 and table.annotation_id.is_unique
        assert set(table.annotator_id) == {"admin@example.com"} and set(table.tool) == {"label_studio"}
        by_image = {k: g for k, g in table.groupby("image_id")}
        assert (by_image[accepted_id].premask_iou == 1.0).all()
        assert set(by_image[accepted_id].assistance) == {"sam2-assisted"}
        assert abs(by_image[accepted_id].seconds_spent.sum() - 20.0) < 1e-6
        edited_row = by_image[edited_id].iloc[0]
        assert 0.5 < edited_row.premask_iou < 1.0 and edited_row.assistance == "sam2-assisted"
        assert (
            np.array_equal(decode_mask(edited_row.rle, h, w), edited_mask)
            and edited_row.seconds_spent == 45.0
        )
        drawn_row = by_image[drawn_id].iloc[0]
        assert drawn_row.assistance == "manual" and drawn_row.class_id == taxonomy.by_name("container").id

        # Nothing changed in Label Studio: no new run, and a re-import changes nothing.
        again_tick = label_studio_review_sensor(
            build_sensor_context(instance=instance, cursor=tick.cursor, resources=sensor_resources)
        )
        assert not getattr(again_tick, "run_requests", None)
        pulls = store.list(f"reviews/{BATCH}/label_studio_api")
        assert materialize(
            [reviewed_annotations], partition_key=BATCH, instance=instance, resources=resources
        ).success
        assert store.list(f"reviews/{BATCH}/label_studio_api") == pulls and len(pulls) == 1
        assert store.read_parquet(annotations_key(BATCH)).equals(table)

        # The QC samples become saved filters in the project; each tab shows exactly its sample, and a
        # second run updates the tabs instead of adding new ones.
        for _ in range(2):
            assert materialize(
                [qc_assignments], partition_key=BATCH, instance=instance, resources=resources
            ).success
        sample = store.read_parquet(f"tables/qc/{BATCH}.parquet")
        ours = [v for v in client.views(project_id) if v["data"]["title"].startswith("QC ")]
        assert len(ours) == sample.groupby(["tier", "reviewer_id"]).ngroups
        for view in ours:
            tier = "peer_review" if "peer review" in view["data"]["title"] else "expert_audit"
            shown = {t["data"]["image_id"] for t in client.view_tasks(view["id"], project_id)}
            assert shown == set(sample[sample.tier == tier].image_id), view["data"]["title"]


def test_wrong_token_unreachable_server_and_mismatched_labels_are_clear_errors(label_studio, tmp_path):
    url, documents = label_studio
    taxonomy = load_taxonomy()
    with pytest.raises(LabelStudioError, match="refused the API token") as wrong:
        LabelStudioClient(url, "not-the-token").find_project("x")
    assert "not-the-token" not in str(wrong.value)
    with pytest.raises(LabelStudioError, match=r"cannot reach Label Studio at http://127.0.0.1:9"):
        LabelStudioClient("http://127.0.0.1:9", TOKEN, timeout_s=5).find_project("x")
    client = LabelStudioClient(url, TOKEN)
    title = project_title("mismatch", taxonomy)
    client._request(
        "POST",
        "/api/projects",
        json={
            "title": title,
            "label_config": '<View><Image name="image" value="$image"/><BrushLabels name="brush" toName="image">'
            '<Label value="teapot"/><Label value="gripper"/></BrushLabels></View>',
        },
    )
    with pytest.raises(LabelStudioError, match=r"missing \['container'.*unknown \['teapot'\]"):
        client.ensure_project(title, taxonomy)

    # In a run: the step fails with the reason and leaves the batch's stored table as it was.
    store = DatasetStore(str(documents / "store-errors"))
    store.write_parquet(annotations_key("e1"), pd.DataFrame({"annotation_id": ["kept"]}))
    before = store.read_bytes(annotations_key("e1"))
    resources = _resources(store, url, documents, token="not-the-token")
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(capture_batches.name, ["e1"])
        result = materialize(
            [reviewed_annotations],
            partition_key="e1",
            instance=instance,
            resources=resources,
            raise_on_error=False,
        )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "refused the API token" in str(failure.step_failure_data.user_failure_data.description)
    assert store.read_bytes(annotations_key("e1")) == before


def test_keyframes_then_propagated_frames_through_a_live_label_studio(label_studio, tmp_path):
    """Keyframes go to Label Studio first; once their annotations are pulled, the propagated frames
    join the same project with the propagated masks as predictions; accepting one and editing
    another comes back as ``propagated`` and ``propagated-corrected``."""
    from assets.episode_propagation import episode_propagation
    from dataset_pipeline.demo import write_demo_upload
    from dataset_pipeline.layout import ground_truth_key, keyframes_key, label_studio_tasks_key

    url, documents = label_studio
    batch = "ls-episodes"
    store = DatasetStore(str(documents / "episode-store"))
    write_demo_upload(store, batch, n_images=14, seed=6, frames_per_episode=14, with_depth=False)
    resources = _resources(store, url, documents) | {"label_studio": LabelStudioResource(
        enabled=True, url=url, api_token=TOKEN, project_prefix="dp-episodes")}  # fmt: skip
    client = LabelStudioClient(url, TOKEN)
    truth = store.read_parquet(ground_truth_key(batch))
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(capture_batches.name, [batch])
        assert materialize(
            stage_assets(PER_BATCH_STAGES), partition_key=batch, instance=instance, resources=resources
        ).success
        keyframes = store.read_parquet(keyframes_key(batch))
        chosen = set(keyframes.image_id[keyframes.keyframe])
        project_id = int(store.read_parquet(label_studio_tasks_key(batch)).project_id.iloc[0])
        there = {t["data"]["image_id"]: t for t in client.tasks(project_id)}
        assert set(there) == chosen and len(chosen) < 14
        for image_id in chosen:  # a person labels each keyframe exactly
            results = [
                {"id": f"k{n}", "type": "brushlabels", "from_name": ls_tasks.BRUSH_FROM_NAME,
                 "to_name": ls_tasks.IMAGE_TO_NAME, "original_width": int(r.width),
                 "original_height": int(r.height), "origin": "manual",
                 "value": {"format": "rle", "rle": ls_codec.mask_to_brush_rle(decode_mask(r.rle, r.height, r.width)),
                           "brushlabels": [r.class_name]}}
                for n, r in enumerate(truth[truth.image_id == image_id].itertuples())
            ]  # fmt: skip
            client._request(
                "POST",
                f"/api/tasks/{there[image_id]['id']}/annotations",
                json={"result": results, "lead_time": 60.0},
            )
        propagated = materialize(
            [reviewed_annotations, episode_propagation],
            partition_key=batch,
            instance=instance,
            resources=resources,
        )
        assert propagated.success
        there = {t["data"]["image_id"]: t for t in client.tasks(project_id)}
        between = set(keyframes.image_id[~keyframes.keyframe])
        assert set(there) == chosen | between
        assert set(store.read_parquet(label_studio_tasks_key(batch)).image_id) == chosen | between
        accept_id, edit_id = sorted(between)[:2]
        accepted = there[accept_id]["predictions"][0]["result"]
        first = there[edit_id]["predictions"][0]["result"][0]
        h, w = first["original_height"], first["original_width"]
        mask = ls_codec.brush_rle_to_mask(first["value"]["rle"], h, w).copy()
        ys, _ = np.nonzero(mask)
        mask[ys.min() : ys.min() + max(1, (ys.max() - ys.min()) // 3)] = False
        edited = [
            {
                **first,
                "origin": "prediction-changed",
                "value": {**first["value"], "rle": ls_codec.mask_to_brush_rle(mask)},
            }
        ]
        for image_id, result in ((accept_id, accepted), (edit_id, edited)):
            client._request(
                "POST",
                f"/api/tasks/{there[image_id]['id']}/annotations",
                json={"result": result, "lead_time": 9.0},
            )
        assert materialize(
            [reviewed_annotations], partition_key=batch, instance=instance, resources=resources
        ).success
    table = store.read_parquet(annotations_key(batch))
    assert set(table[table.image_id == accept_id].assistance) == {"propagated"}
    assert list(table[table.image_id == edit_id].assistance) == ["propagated-corrected"]
    on_keyframes = set(table[table.image_id.isin(chosen)].assistance)
    assert on_keyframes and on_keyframes <= {"manual", "sam2-assisted"}  # drawn, or close to a pre-mask


def _scene_png(path: Path) -> np.ndarray:
    """A grey image with a red block: the object a click on it should give the mask of."""
    from PIL import Image

    rng = np.random.default_rng(2)
    image = np.full((120, 160, 3), 150, np.uint8) + rng.integers(0, 12, (120, 160, 3), dtype=np.uint8)
    image[40:80, 60:110] = (200, 30, 30)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    truth = np.zeros((120, 160), bool)
    truth[40:80, 60:110] = True
    return truth


@pytest.fixture
def ml_backend(label_studio):
    """``dataset-pipeline ml-backend`` as a user starts it (classical backend, no detector), with basic auth."""
    url, _ = label_studio
    port = _free_port()
    command = [
        str(ROOT / ".venv" / "bin" / "python"),
        "-c",
        "import sys; from dataset_pipeline.cli import main; sys.exit(main())",
        "ml-backend",
        "--port",
        str(port),
        "--label-studio-url",
        url,
        "--label-studio-token",
        TOKEN,
        "--basic-auth",
        "dp:backend-secret",
    ]
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"ml-backend-{port}.log"
    log = log_path.open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True)
    backend_url = f"http://127.0.0.1:{port}"
    try:
        import requests

        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"the ML backend exited: {log_path.read_text()}")
            try:
                if requests.get(f"{backend_url}/health", auth=("dp", "backend-secret"), timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the ML backend did not come up in 60 s")
            time.sleep(0.5)
        yield backend_url
    finally:
        log.close()
        print(log_path.read_text()[-4000:])  # shown when a test fails
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_ml_backend_connected_to_label_studio_answers_an_annotators_click(label_studio, ml_backend):
    url, documents = label_studio
    truth = _scene_png(documents / "ml" / "scene.png")
    taxonomy = load_taxonomy()
    client = LabelStudioClient(url, TOKEN)
    project_id = client.ensure_project(project_title("dp-ml", taxonomy), taxonomy)
    # Label Studio serves /data/local-files/ only under a local storage connected to the project
    client._request(
        "POST",
        "/api/storages/localfiles",
        json={"project": project_id, "path": str(documents / "ml"), "title": "ml", "use_blob_urls": False},
    )
    client.import_tasks(
        project_id, [{"data": {"image": "/data/local-files/?d=ml/scene.png", "image_id": "scene"}}]
    )
    (task,) = client.tasks(project_id)
    connection = {
        "project": project_id,
        "url": ml_backend,
        "title": "dataset_pipeline",
        "is_interactive": True,
        "auth_method": "BASIC_AUTH",
        "basic_auth_user": "dp",
    }
    import requests

    headers = {"Authorization": f"Token {TOKEN}"}
    wrong = requests.post(f"{url}/api/ml", json=connection | {"basic_auth_pass": "wrong"}, headers=headers)
    assert wrong.status_code == 400 and "authentication parameters" in wrong.text  # checked on connect
    response = requests.post(
        f"{url}/api/ml", json=connection | {"basic_auth_pass": "backend-secret"}, headers=headers
    )
    assert response.status_code == 201, response.text
    created = response.json()
    backend = client._request("GET", f"/api/ml/{created['id']}")
    assert backend["state"] == "CO", backend  # connected: /health and /setup answered
    assert backend["model_version"].startswith("classical:")

    # An annotator clicks the block with the smart keypoint tool, label target_object.
    click = {
        "type": "keypointlabels",
        "from_name": "click",
        "to_name": "image",
        "original_width": 160,
        "original_height": 120,
        "is_positive": True,
        "value": {
            "x": 100 * 85 / 160,
            "y": 100 * 60 / 120,
            "width": 0.6,
            "keypointlabels": ["target_object"],
        },
    }
    answer = client._request(
        "POST",
        f"/api/ml/{created['id']}/interactive-annotating",
        json={"task": task["id"], "context": {"result": [click]}},
    )
    assert "errors" not in answer, answer
    (result,) = answer["data"]["result"]
    assert result["value"]["brushlabels"] == ["target_object"] and result["from_name"] == "brush"
    mask = ls_codec.brush_rle_to_mask(result["value"]["rle"], 120, 160)
    assert (mask & truth).sum() / (mask | truth).sum() > 0.8

    # An unknown label: Label Studio passes on the backend's HTTP error, and the backend keeps serving.
    unknown = {**click, "value": {**click["value"], "keypointlabels": ["unicorn"]}}
    refused = client._request(
        "POST",
        f"/api/ml/{created['id']}/interactive-annotating",
        json={"task": task["id"], "context": {"result": [unknown]}},
    )
    assert "422" in refused["errors"][0]
    again = client._request(
        "POST",
        f"/api/ml/{created['id']}/interactive-annotating",
        json={"task": task["id"], "context": {"result": [click]}},
    )
    assert again["data"]["result"][0]["value"]["rle"] == result["value"]["rle"]

    # Batch predictions (Data Manager → Retrieve Predictions): one per task, recorded with the model
    # version, and empty without a detector, as /setup said.
    client._request(
        "POST",
        "/api/dm/actions",
        params={"id": "retrieve_tasks_predictions", "project": project_id},
        json={"selectedItems": {"all": True, "excluded": []}},
    )
    (held,) = client.tasks(project_id)[0]["predictions"]
    assert held["model_version"] == backend["model_version"] and held["result"] == []

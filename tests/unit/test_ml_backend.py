"""The Label Studio ML backend: its protocol over HTTP (Starlette's test client), images fetched over real
HTTP from a local server that checks the token as Label Studio does, the classical backend, and SAM 2 /
OWLv2 built from their configs with random weights. The real Label Studio 1.23.2 drives it in
tests/services/test_label_studio_live.py."""

from __future__ import annotations

import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from dataset_pipeline.formats.label_studio.codec import brush_rle_to_mask
from dataset_pipeline.formats.label_studio.tasks import INTERACTIVE_RESULT_PREFIX, labeling_config
from dataset_pipeline.interactive.images import ImageFetcher
from dataset_pipeline.interactive.label_studio import (
    LabelStudioMLBackend,
    create_app,
    parse_label_config,
)
from dataset_pipeline.interactive.session import InteractiveSession
from dataset_pipeline.sam2_premasks.classical import ClassicalBackend
from dataset_pipeline.taxonomy import load_taxonomy

TOKEN = "backend-test-token"
HEIGHT, WIDTH = 120, 160
SQUARE = (slice(40, 80), slice(60, 110))  # rows, columns of the object


def _scene() -> bytes:
    rng = np.random.default_rng(1)
    image = np.full((HEIGHT, WIDTH, 3), 150, np.uint8) + rng.integers(
        0, 12, (HEIGHT, WIDTH, 3), dtype=np.uint8
    )
    image[SQUARE] = (200, 30, 30)
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def image_server():
    """A local server in Label Studio's place: /data/upload/... needs ``Authorization: Token``."""
    body = _scene()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the stdlib's name)
            if self.path.startswith("/data/") and self.headers.get("Authorization") != f"Token {TOKEN}":
                self.send_response(401)
                self.end_headers()
                return
            if not self.path.endswith(("scene.png", "?d=scene.png")):
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _client(url: str, token: str | None = TOKEN, detector=None, basic_auth=None, backend=None):
    session = InteractiveSession(backend or ClassicalBackend(), load_taxonomy(), detector=detector)
    service = LabelStudioMLBackend(session, ImageFetcher(url, token))
    return TestClient(create_app(service, basic_auth=basic_auth)), session


CONFIG = labeling_config(load_taxonomy())


def _click(x: float, y: float, label: str = "target_object", positive: bool = True) -> dict:
    return {
        "type": "keypointlabels",
        "from_name": "click",
        "to_name": "image",
        "original_width": WIDTH,
        "original_height": HEIGHT,
        "is_positive": positive,
        "value": {"x": 100 * x / WIDTH, "y": 100 * y / HEIGHT, "width": 0.6, "keypointlabels": [label]},
    }


def _predict(client, context: list[dict] | None, image: str = "/data/upload/1/scene.png", tasks: int = 1):
    return client.post(
        "/predict",
        json={
            "tasks": [{"id": 7 + k, "data": {"image": image}} for k in range(tasks)],
            "project": "3.1700000000",
            "label_config": CONFIG,
            "params": {"login": None, "password": None, "context": {"result": context} if context else None},
        },
    )


def _mask(result: dict) -> np.ndarray:
    return brush_rle_to_mask(result["value"]["rle"], result["original_height"], result["original_width"])


def _iou_with_square(mask: np.ndarray) -> float:
    truth = np.zeros((HEIGHT, WIDTH), bool)
    truth[SQUARE] = True
    return float((mask & truth).sum() / (mask | truth).sum())


def test_health_and_setup_say_plainly_what_the_backend_can_do(image_server):
    client, _ = _client(image_server)
    health = client.get("/health").json()
    assert health["status"] == "UP" and health["batch_predictions"] is False
    setup = client.post("/setup", json={"project": "3.1700000000", "schema": CONFIG}).json()
    assert setup["model_version"].startswith("classical:")
    assert "no classed pre-mask can be made" in setup["message"] and "--detector" in setup["message"]
    # batch predictions without a detector: one empty prediction per task, in order
    answer = _predict(client, None, tasks=2).json()
    assert [r["result"] for r in answer["results"]] == [[], []]


def test_a_click_gets_a_brush_mask_of_the_clicked_class_and_the_second_hits_the_cache(image_server):
    client, session = _client(image_server)
    first = _predict(client, [_click(85, 60)])
    assert first.status_code == 200, first.text
    (prediction,) = first.json()["results"]
    (result,) = prediction["result"]
    assert result["type"] == "brushlabels" and result["value"]["brushlabels"] == ["target_object"]
    assert (result["from_name"], result["to_name"]) == ("brush", "image")
    assert result["id"].startswith(INTERACTIVE_RESULT_PREFIX)
    assert _iou_with_square(_mask(result)) > 0.8
    assert (session.hits, session.misses) == (0, 1)
    # adjust: a second, negative click on the same image reuses the cached embedding
    second = _predict(client, [_click(85, 60), _click(20, 20, positive=False)])
    assert second.status_code == 200 and (session.hits, session.misses) == (1, 1)
    assert _iou_with_square(_mask(second.json()["results"][0]["result"][0])) > 0.8


def test_a_box_gets_a_mask(image_server):
    client, _ = _client(image_server)
    box = {
        "type": "rectanglelabels",
        "original_width": WIDTH,
        "original_height": HEIGHT,
        "value": {
            "x": 100 * 55 / WIDTH,
            "y": 100 * 35 / HEIGHT,
            "width": 100 * 60 / WIDTH,
            "height": 100 * 50 / HEIGHT,
            "rectanglelabels": ["container"],
        },
    }
    answer = _predict(client, [box]).json()["results"][0]["result"][0]
    assert answer["value"]["brushlabels"] == ["container"] and _iou_with_square(_mask(answer)) > 0.8


def test_bad_requests_get_http_errors_with_the_reason_and_the_server_keeps_serving(image_server):
    client, _ = _client(image_server)
    unknown = _predict(client, [_click(85, 60, label="unicorn")])
    assert unknown.status_code == 422 and "unknown label 'unicorn'" in unknown.json()["error"]
    wrong_token, _ = _client(image_server, token="not-the-token")
    refused = _predict(wrong_token, [_click(85, 60)])
    assert refused.status_code == 502 and "refused the token" in refused.json()["error"]
    assert "task 7" in refused.json()["error"]
    unreachable = _predict(client, [_click(85, 60)], image="http://127.0.0.1:9/scene.png")
    assert unreachable.status_code == 502 and "unreachable" in unreachable.json()["error"]
    missing = _predict(client, [_click(85, 60)], image="/data/upload/1/other.png")
    assert missing.status_code == 502 and "HTTP 404" in missing.json()["error"]
    outside = _predict(client, [_click(500, 60)])
    assert outside.status_code == 422 and "outside the 160x120 image" in outside.json()["error"]
    not_json = client.post("/predict", content=b"{", headers={"content-type": "application/json"})
    assert not_json.status_code == 400 and "not JSON" in not_json.json()["error"]
    no_config = client.post("/setup", json={"project": "3.1", "schema": "<View/>"})
    assert no_config.status_code == 422 and "BrushLabels" in no_config.json()["error"]
    # still serving, and the good request still works
    assert _predict(client, [_click(85, 60)]).status_code == 200


def test_basic_auth(image_server):
    client, _ = _client(image_server, basic_auth=("ls", "secret"))
    assert client.get("/health").status_code == 401
    assert client.get("/health", auth=("ls", "wrong")).status_code == 401
    assert client.get("/health", auth=("ls", "secret")).status_code == 200


@pytest.fixture(scope="module")
def sam2_backend():
    from dataset_pipeline.sam2_premasks.sam2 import Sam2Backend

    return Sam2Backend(checkpoint=None, device="cpu", image_size=256)  # 1024 in use; 16x fewer pixels here


def test_batch_predictions_from_the_detector(image_server, sam2_backend):
    from dataset_pipeline.sam2_premasks.detector import random_owl_detector

    detector = random_owl_detector(threshold=0.0, max_detections=2)
    client, _ = _client(image_server, detector=detector, backend=sam2_backend)
    setup = client.post("/setup", json={"project": "3.1700000000", "schema": CONFIG}).json()
    assert setup["batch_predictions"] is True and "owlv2" in setup["model_version"]
    answer = _predict(client, None, image="/data/local-files/?d=scene.png", tasks=2).json()
    assert len(answer["results"]) == 2
    taxonomy = load_taxonomy()
    (boxes,) = detector.detect([np.asarray(Image.open(io.BytesIO(_scene())).convert("RGB"))], taxonomy)
    for prediction in answer["results"]:  # the same image twice: the same boxes' classes, in order
        assert [r["value"]["brushlabels"][0] for r in prediction["result"]] == [
            taxonomy.by_id(d.class_id).name for d in boxes
        ]
        assert all(_mask(r).any() for r in prediction["result"])


def test_sam2_interactive_with_its_embedding_cached(image_server, sam2_backend):
    client, session = _client(image_server, backend=sam2_backend)
    for _ in range(2):
        answer = _predict(client, [_click(85, 60)])
        assert answer.status_code == 200, answer.text
        results = answer.json()["results"][0]["result"]
        assert all(_mask(r).shape == (HEIGHT, WIDTH) for r in results)
    assert (session.hits, session.misses) == (1, 1)
    assert answer.json()["results"][0]["model_version"].startswith("sam2:sam2.1_hiera_t@random-weights")


def test_parse_label_config_needs_brush_labels_on_an_image():
    assert parse_label_config(CONFIG).labels == tuple(c.name for c in load_taxonomy().foreground)

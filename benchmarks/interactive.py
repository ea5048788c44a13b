"""Pre-masks without a detector of one's own, and SAM inside the annotation tool: what it costs.

* ``click``: one annotator click answered (``InteractiveSession.click``, model time) on a 1024x768
  image, with the image's embedding cached (our backend) and without (the peer:
  label-studio-ml-backend's segment_anything_2_image example calls ``set_image`` on every click;
  here the same backend embeds the image again each time, same process, same weights);
* ``http``: the same cached click through the ML backend's HTTP protocol (Starlette test client:
  JSON, the brush RLE of the answer);
* ``detect``: text-prompted boxes (OWLv2 at its checkpoint's 960 px, the taxonomy's 25 queries)
  and their SAM 2 / classical masks, images per second per batch;
* ``rle``: COCO RLE of a batch of masks, runs found by torch (``encode_masks_on_device``; on the
  GPU that is where the masks are) against pycocotools on host masks (the peer).

Random weights throughout (speed does not depend on them). Figures: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np


def _scene(seed: int = 0, height: int = 768, width: int = 1024) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = (rng.random((height, width, 3)) * 40 + 120).astype(np.uint8)
    for _ in range(6):
        y, x = rng.integers(0, height - 200), rng.integers(0, width - 200)
        image[y : y + rng.integers(60, 200), x : x + rng.integers(60, 200)] = rng.integers(0, 255, 3)
    return image


def _backend(name: str, device: str):
    if name == "classical":
        from dataset_pipeline.sam2_premasks.classical import ClassicalBackend

        return ClassicalBackend()
    from dataset_pipeline.sam2_premasks.sam2 import Sam2Backend

    return Sam2Backend(checkpoint=None, device=device)


def click(backend, clicks: int) -> dict:
    from dataset_pipeline.interactive.session import InteractiveSession
    from dataset_pipeline.taxonomy import load_taxonomy

    image = _scene()
    session = InteractiveSession(backend, load_taxonomy())
    rng = np.random.default_rng(1)
    points = [(float(rng.integers(100, 900)), float(rng.integers(100, 700))) for _ in range(clicks)]
    session.click("scene", lambda: image, [points[0]], [1])  # warm-up, and the embedding cached
    cached = [session.click("scene", lambda: image, [p], [1]).seconds for p in points]
    uncached = []
    for p in points[: max(2, clicks // 4)]:
        started = time.perf_counter()
        embedding = backend.embed(image)
        backend.predict_interactive(embedding, [p], [1])
        uncached.append(time.perf_counter() - started)
    cached_ms, uncached_ms = statistics.median(cached) * 1000, statistics.median(uncached) * 1000
    return {
        "what": "click",
        "backend": backend.name,
        "device": backend.device,
        "image": "1024x768",
        "clicks": clicks,
        "cached_ms_median": round(cached_ms, 1),
        "peer_embed_every_click_ms_median": round(uncached_ms, 1),
        "ratio": round(uncached_ms / cached_ms, 1),
    }


def http(backend, clicks: int) -> dict:
    import io

    from PIL import Image
    from starlette.testclient import TestClient

    from dataset_pipeline.formats.label_studio.tasks import labeling_config
    from dataset_pipeline.interactive.images import ImageFetcher
    from dataset_pipeline.interactive.label_studio import LabelStudioMLBackend, create_app
    from dataset_pipeline.interactive.session import InteractiveSession
    from dataset_pipeline.taxonomy import load_taxonomy

    image = _scene()
    session = InteractiveSession(backend, load_taxonomy())
    service = LabelStudioMLBackend(session, ImageFetcher())
    encoded = io.BytesIO()
    Image.fromarray(image).save(encoded, format="PNG")
    service.fetcher.read = lambda url: image  # type: ignore[method-assign]  # no network in the figure
    client = TestClient(create_app(service))
    config = labeling_config(load_taxonomy())

    def one(x: float, y: float) -> float:
        body = {
            "tasks": [{"id": 1, "data": {"image": "/data/upload/1/scene.png"}}],
            "label_config": config,
            "params": {
                "context": {
                    "result": [
                        {
                            "type": "keypointlabels",
                            "original_width": 1024,
                            "original_height": 768,
                            "value": {"x": x / 10.24, "y": y / 7.68, "keypointlabels": ["target_object"]},
                        }
                    ]
                }
            },
        }
        started = time.perf_counter()
        response = client.post("/predict", json=body)
        assert response.status_code == 200, response.text
        return time.perf_counter() - started

    one(500, 400)
    times = [one(300 + 5 * k, 300 + 3 * k) for k in range(clicks)]
    return {
        "what": "http",
        "backend": backend.name,
        "device": backend.device,
        "clicks": clicks,
        "cached_request_ms_median": round(statistics.median(times) * 1000, 1),
    }


def detect(backend, device: str, images: int, batch: int) -> dict:
    from transformers import Owlv2Config, Owlv2ForObjectDetection

    from dataset_pipeline.interactive.session import InteractiveSession
    from dataset_pipeline.sam2_premasks.detector import OwlDetector, random_owl_detector
    from dataset_pipeline.taxonomy import load_taxonomy

    small = random_owl_detector()  # for its processor's tokenizer
    config = Owlv2Config()  # ViT-B/16 text and vision towers, as owlv2-base-patch16-ensemble
    config.vision_config.image_size = 960
    small.processor.image_processor.size = {"height": 960, "width": 960}
    config.text_config.vocab_size = small.model.config.text_config.vocab_size
    config.text_config.max_position_embeddings = 16
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(config.text_config, key, getattr(small.model.config.text_config, key))
    detector = OwlDetector(
        device=device,
        model=Owlv2ForObjectDetection(config),
        processor=small.processor,
        threshold=0.0,
        max_detections=6,
    )
    taxonomy = load_taxonomy()
    session = InteractiveSession(backend, taxonomy, detector=detector)
    data = [_scene(seed) for seed in range(images)]
    session.classed_masks(data[:batch])  # warm-up
    started = time.perf_counter()
    detector_seconds, masks = 0.0, 0
    for start in range(0, images, batch):
        chunk = data[start : start + batch]
        t0 = time.perf_counter()
        detector.detect(chunk, taxonomy)
        detector_seconds += time.perf_counter() - t0
        masks += sum(len(m) for m in session.classed_masks(chunk))
    seconds = time.perf_counter() - started - detector_seconds  # classed_masks runs the detector too
    return {
        "what": "detect",
        "backend": backend.name,
        "device": backend.device,
        "detector": detector.model_version,
        "queries": sum(len(c.text_queries) for c in taxonomy.foreground),
        "images": images,
        "batch": batch,
        "detector_images_per_s": round(images / detector_seconds, 3),
        "detector_plus_masks_images_per_s": round(images / seconds, 3),
        "masks": masks,
    }


def rle(device: str, count: int) -> dict:
    import torch

    from dataset_pipeline.masks import encode_mask, encode_masks_on_device

    rng = np.random.default_rng(0)
    masks = np.zeros((count, 768, 1024), bool)
    for k in range(count):
        y, x = rng.integers(0, 600), rng.integers(0, 850)
        masks[k, y : y + rng.integers(40, 160), x : x + rng.integers(40, 170)] = True
    on_device = torch.from_numpy(masks).to(device)
    ours, peer = [], []
    for _ in range(3):
        started = time.perf_counter()
        strings = encode_masks_on_device(on_device)
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        reference = [encode_mask(m) for m in on_device.cpu().numpy()]
        peer.append(time.perf_counter() - started)
    assert strings == reference
    return {
        "what": "rle",
        "device": device,
        "masks": count,
        "ours_masks_per_s": round(count / statistics.median(ours), 1),
        "peer_pycocotools_masks_per_s": round(count / statistics.median(peer), 1),
        "ratio": round(statistics.median(peer) / statistics.median(ours), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="classical,sam2")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clicks", type=int, default=20)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--rle-masks", type=int, default=192)
    parser.add_argument("--only", default="click,http,detect,rle")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    only = set(args.only.split(","))
    rows = []
    for name in args.backend.split(","):
        backend = _backend(name, args.device)
        if "click" in only:
            rows.append(click(backend, args.clicks))
            print(json.dumps(rows[-1]), flush=True)
        if "http" in only:
            rows.append(http(backend, args.clicks))
            print(json.dumps(rows[-1]), flush=True)
        if "detect" in only:
            rows.append(detect(backend, args.device, args.images, args.batch))
            print(json.dumps(rows[-1]), flush=True)
    if "rle" in only:
        rows.append(rle(args.device, args.rle_masks))
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()

"""solov2 serve: the JSON API through FastAPI's ASGI test client, on the tiny trained checkpoint (conftest.py's
trained_tiny); the inference queue (arrival order, 503 when full, batches equal to single images); Ctrl-C and the
missing extra through the CLI."""
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest
from fastapi.testclient import TestClient
from helpers import ROOT, TRAINED_DATA, mask_iou, png, post_image, shapes_image
from pycocotools import mask as mask_utils

from solov2 import Predictor
from solov2.apps.serve import InferenceQueue, create_app
from solov2.cli import main

TINY = str(ROOT / "tests/data/tiny_shapes.py")
CLASSES = ["disc", "rectangle", "triangle", "ring", "star"]
SIZE = TRAINED_DATA["image_size"]  # the uploads: shapes_image's default size
INSTANCE_KEYS = {"class_id", "class_name", "category_id", "score", "bbox", "segmentation"}


@pytest.fixture(scope="module")
def detecting_checkpoint(tmp_path_factory):
    """TINY with random weights and every cell scoring sigmoid(2) for every class: many instances, no training
    (the tests of the server's behaviour; those of what it answers use the trained checkpoint)."""
    import torch

    from solov2 import build_model, load_config
    from solov2.checkpoint.io import save_checkpoint
    from solov2.checkpoint.model_config import checkpoint_meta
    cfg = load_config(TINY)
    torch.manual_seed(0)
    model = build_model(cfg)
    torch.nn.init.constant_(model.bbox_head.solo_cate.bias, 2.0)
    path = tmp_path_factory.mktemp("serve") / "model.pth"
    save_checkpoint(str(path), model, meta=checkpoint_meta(cfg, CLASSES, [10, 20, 30, 40, 50]))
    return str(path)


@pytest.fixture(scope="module")
def predictor(detecting_checkpoint):
    return Predictor(detecting_checkpoint, score_thr=0.0)


@pytest.fixture(scope="module")
def client(predictor):
    with TestClient(create_app(predictor)) as client:
        yield client


@pytest.fixture(scope="module")
def checkpoint(trained_tiny):
    return str(trained_tiny)


def _post(client, data: bytes, name: str = "a.png", **form):
    return client.post("/predict", files={"image": (name, data, "image/png")}, data=form)


def test_health_page_and_docs(client):
    health = client.get("/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "model": "model.pth", "classes": CLASSES}
    page = client.get("/")
    assert page.status_code == 200 and 'src="/static/app.js"' in page.text and 'data-score-thr="0.3"' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no CDN: the page works offline
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    assert "/predict" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200
    missing = client.get("/no-such-page")
    assert missing.status_code == 404 and "error" in missing.json()


@pytest.mark.slow
def test_predict_returns_coco_rle_of_the_instances(checkpoint):
    predictor = Predictor(checkpoint, score_thr=0.0)
    with TestClient(create_app(predictor)) as client:
        _check_predict(client, predictor)


@pytest.mark.slow
def test_an_exported_onnx_file_serves_in_place_of_the_checkpoint(checkpoint, tmp_path):
    onnx = tmp_path / "model.onnx"
    assert main(["export", checkpoint, "--format", "onnx", "--dynamic", "--out", str(onnx)]) == 0
    image = png(shapes_image(0)[0])
    answers = []
    for source in (onnx, checkpoint):
        with TestClient(create_app(Predictor(str(source), score_thr=0.0))) as client:
            assert client.get("/health").json()["model"] == os.path.basename(source)
            answers.append(_post(client, image).json()["instances"])
    exported, torch_answer = answers
    assert len(exported) == len(torch_answer) > 0
    assert [i["class_id"] for i in exported] == [i["class_id"] for i in torch_answer]
    assert [i["score"] for i in exported] == pytest.approx([i["score"] for i in torch_answer], abs=1e-4)


def _check_predict(client, predictor):
    image, target = shapes_image(0)
    answer = _post(client, png(image), score_thr="0")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["width"], body["height"]) == (SIZE, SIZE)
    direct = predictor(image)
    assert len(body["instances"]) == len(direct["scores"]) > 0
    for inst, mask, label, score in zip(body["instances"], direct["masks"], direct["labels"], direct["scores"]):
        assert set(inst) == INSTANCE_KEYS
        # category_id: the training data's (SyntheticShapes numbers its categories 1..5)
        assert (inst["class_id"], inst["class_name"], inst["category_id"]) == (label, CLASSES[label], label + 1)
        assert inst["score"] == pytest.approx(float(score), abs=1e-6)
        assert isinstance(inst["segmentation"]["counts"], str) and inst["segmentation"]["size"] == [SIZE, SIZE]
        rle = {"size": inst["segmentation"]["size"], "counts": inst["segmentation"]["counts"].encode()}
        np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), mask)
        ys, xs = np.nonzero(mask)
        assert inst["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    # The trained model finds the shapes: the best instance covers a ground-truth shape of its class.
    best = body["instances"][0]
    mask = mask_utils.decode({**best["segmentation"], "counts": best["segmentation"]["counts"].encode()}) > 0
    truth = target["masks"].numpy()
    ious = [(mask & t).sum() / (mask | t).sum() for t in truth]
    assert max(ious) > 0.5, ious
    assert target["labels"][int(np.argmax(ious))] == best["class_id"]
    # score_thr: the server's default (0.3) keeps the instances scoring at least that; 1 keeps none.
    default = _post(client, png(image)).json()["instances"]
    assert [i["score"] for i in default] == [i["score"] for i in body["instances"] if i["score"] >= 0.3]
    assert _post(client, png(image), score_thr="1").json()["instances"] == []


def test_predict_answers_the_checkpoints_category_ids(client):
    instances = _post(client, png(shapes_image(0)[0])).json()["instances"]
    assert len(instances) > 0 and all(set(i) == INSTANCE_KEYS for i in instances)
    assert all(i["category_id"] == 10 * (i["class_id"] + 1) and i["score"] >= 0.3 for i in instances)


def _error(response, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert isinstance(message, str) and all(w in message for w in words), message
    return message


def test_bad_uploads_get_4xx_json_and_the_server_goes_on(predictor):
    good, wide = png(shapes_image(1)[0]), png(shapes_image(1, SIZE + 1)[0])
    limit = max(len(good), len(wide)) + 100
    with TestClient(create_app(predictor, max_upload_bytes=limit, max_pixels=SIZE * SIZE)) as client:
        _error(_post(client, b"this is not an image", "notes.png"), 400, "notes.png", "not an image")
        _error(_post(client, b"", "empty.png"), 400, "empty.png", "empty")
        _error(_post(client, good[: len(good) // 2], "cut.png"), 400, "cut.png", "cannot read image")
        _error(_post(client, good + b"\0" * (limit - len(good) + 1), "big.png"), 413, "big.png", "upload limit")
        _error(_post(client, os.urandom(200_000), "huge.png"), 413, "over the limit")  # refused by its length
        _error(_post(client, wide, "wide.png"), 413, f"{SIZE + 1}x{SIZE + 1} is {(SIZE + 1) ** 2:,} pixels",
               f"over the limit of {SIZE * SIZE:,}")  # both exact: rounded megapixels once read "0.0"
        _error(_post(client, good, score_thr="2"), 422, "score_thr")
        _error(client.post("/predict", data={"score_thr": "0.5"}), 422, "image")
        answer = _post(client, good)
        assert answer.status_code == 200 and answer.json()["width"] == SIZE


class _Gated:
    """The predictor, held at its first call until ``release`` is set; records the image sizes of each call."""

    def __init__(self, predictor):
        self.predictor, self.batch_size, self.class_names = predictor, 1, predictor.class_names
        self.called, self.release, self.calls = threading.Event(), threading.Event(), []

    def __call__(self, images):
        self.calls.append([im.shape[0] for im in images])
        self.called.set()
        assert self.release.wait(60)
        return self.predictor(images)


def _wait_until(condition, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def test_full_queue_answers_503_at_once_and_the_rest_in_order(predictor):
    gated = _Gated(predictor)
    app = create_app(gated, max_queue=2, batch_window_ms=0)
    sizes = [SIZE, SIZE + 8, SIZE + 16]  # one size per request, to see the order they run in
    with TestClient(app) as client:
        answers = {}

        def send(size):
            answers[size] = _post(client, png(shapes_image(2, size)[0]))

        threads = [threading.Thread(target=send, args=(sizes[0],))]
        threads[0].start()
        assert gated.called.wait(60)  # the first request is in the model; the next two wait in the queue
        for size in sizes[1:]:
            threads.append(threading.Thread(target=send, args=(size,)))
            threads[-1].start()
            _wait_until(lambda n=len(threads) - 1: app.state.queue.waiting() == n)
        start = time.monotonic()
        _error(_post(client, png(shapes_image(2)[0])), 503, "busy")
        assert time.monotonic() - start < 5  # answered at once, not after the queue
        gated.release.set()
        for t in threads:
            t.join(60)
    assert [answers[s].status_code for s in sizes] == [200, 200, 200]
    assert [answers[s].json()["width"] for s in sizes] == sizes
    assert gated.calls == [[s] for s in sizes]  # in order of arrival


def test_batched_images_get_the_results_they_get_alone(predictor):
    images = [shapes_image(i)[0] for i in range(3)] + [shapes_image(3, SIZE + 32)[0]]
    jobs = InferenceQueue(predictor, max_queue=8, max_batch=4, window_s=0.05)
    futures = [jobs.submit(png(im), f"{k}.png") for k, im in enumerate(images)]  # queued before the thread starts
    jobs.start()
    try:
        answers = [f.result(timeout=120) for f in futures]
    finally:
        jobs.stop()
    assert [batch for _, batch in answers] == [3, 3, 3, 1]  # one size per batch: the larger image runs alone
    for image, (result, _) in zip(images, answers):
        alone = predictor(image)
        assert len(alone["scores"]) > 0 and len(result["scores"]) == len(alone["scores"])
        # The confident detections must be the same ones. Far down the list, among ~100 near-duplicates of a
        # briefly trained model, float noise of another batch size can move a Matrix NMS decay by 1e-3.
        top = min(5, len(alone["scores"]))
        np.testing.assert_allclose(result["scores"][:top], alone["scores"][:top], atol=1e-4, rtol=0)
        unmatched = set(range(top))
        for label, score, mask in zip(result["labels"][:top], result["scores"][:top], result["masks"][:top]):
            match = next((j for j in sorted(unmatched) if alone["labels"][j] == label
                          and abs(alone["scores"][j] - score) <= 1e-4
                          and mask_iou(mask, alone["masks"][j]) >= 0.999),
                         None)  # detections that tie within float noise may come in either order
            assert match is not None, f"no detection alone matches label {label} score {score:.5f}"
            unmatched.remove(match)


def test_queue_answers_a_failing_model_and_goes_on(predictor):
    class FailsOnce:
        batch_size, class_names, failed = 1, predictor.class_names, False

        def __call__(self, images):
            if not self.failed:
                self.failed = True
                raise RuntimeError("out of memory (simulated)")
            return predictor(images)

    with TestClient(create_app(FailsOnce())) as client:
        _error(_post(client, png(shapes_image(0)[0])), 500, "out of memory")
        assert _post(client, png(shapes_image(0)[0])).status_code == 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_cli_serves_and_ctrl_c_stops_cleanly(checkpoint):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "solov2.cli", "serve", checkpoint, "--port", str(port)],
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        health = None
        for _ in range(240):  # bounded: at most about 60 s for the model to load
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    health = json.loads(r.read())
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
                time.sleep(0.25)
        assert health == {"status": "ok", "model": "latest.pth", "classes": CLASSES}
        assert post_image(f"http://127.0.0.1:{port}", png(shapes_image(0)[0]))["width"] == SIZE
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    lines = err.splitlines()
    assert any("GET /health 200" in line and line.endswith("ms") for line in lines), err
    assert any("POST /predict 200" in line and "ms (a.png" in line for line in lines), err
    assert lines[-1].endswith("stopped") and "Traceback" not in err, err


def test_missing_extra_is_one_line(monkeypatch, capsys):
    import importlib.util
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else
                        find_spec(name, *a))
    assert main(["serve", "model.pth"]) == 1
    assert capsys.readouterr().err == "error: solov2 serve needs fastapi: pip install 'solov2[serve]'\n"


def test_the_queue_refuses_when_full_without_a_thread(predictor):
    jobs = InferenceQueue(predictor, max_queue=1)
    waiting = jobs.submit(b"x", "a.png")
    with pytest.raises(queue.Full):
        jobs.submit(b"y", "b.png")
    jobs.stop()  # what waited is answered: the server is stopping
    with pytest.raises(RuntimeError, match="stopping"):
        waiting.result(timeout=1)

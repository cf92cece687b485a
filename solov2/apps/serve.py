"""``solov2 serve``: one process that loads a model once and answers over HTTP (FastAPI on uvicorn).

* ``GET /`` a page for people (``solov2/apps/static/``: our own HTML, JS and CSS, no CDN): choose or drop images,
  masks drawn in class colours, a score slider and class toggles that redraw in the browser, the instance list,
  downloads of the COCO results JSON and of the PNG masks.
* ``GET /health`` -> ``{"status": "ok", "model": NAME, "classes": [...]}``.
* ``POST /predict`` (multipart: ``image``, optional ``score_thr``) -> ``{"width", "height", "instances": [{"class_id",
  "class_name", "category_id", "score", "bbox": [x, y, w, h], "segmentation": {"size": [H, W], "counts": STR}}]}``,
  the COCO RLE of ``results.json`` (``pycocotools.mask.decode`` gives the mask at the image's size).
* ``GET /docs``: FastAPI's OpenAPI page (its script comes from a CDN; ``/openapi.json`` works offline).

Limits (defaults; ``solov2 serve --help``): an upload of at most 20 MiB (413), an image of at most 40 megapixels
(413); an empty upload, a file that is not an image or a truncated one get 400, a bad ``score_thr`` 422, each as
``{"error": "..."}``, and the server goes on serving. At most 16 requests wait (a 17th is answered 503 at once);
one thread runs the model on them in arrival order. Requests whose images have one size and arrive within
``--batch-window-ms`` (5 ms) of the first of them run as one batch of up to the Predictor's ``batch_size``: a batch
of equal sizes pads nothing, so each image gets the result it gets alone (up to float rounding; tests/test_serve.py).
Ctrl-C stops after the requests in flight are answered; one log line per request gives its time.
"""
import argparse
import asyncio
import concurrent.futures
import importlib.util
import io
import logging
import os
import queue
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["create_app", "InferenceQueue", "add_arguments", "main", "instances_json", "MAX_UPLOAD_BYTES",
           "MAX_PIXELS", "MAX_QUEUE"]

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # 20 MiB: a 40-megapixel JPEG is about 10-20 MB
MAX_PIXELS = 40_000_000  # decoded RGB: 120 MB per image; the network then resizes it to its test scale
MAX_QUEUE = 16
BATCH_WINDOW_MS = 5.0
REQUEST_TIMEOUT_S = 300.0  # a request still unanswered then gets 504 (the queue is bounded, so this is rare)
STATIC = Path(__file__).with_name("static")
EXTRA = "pip install 'solov2[serve]'"
log = logging.getLogger("solov2.serve")


@dataclass
class _Job:
    data: bytes
    name: str
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    image: np.ndarray | None = None


class InferenceQueue:
    """A bounded FIFO of uploaded images served by one thread that runs ``predictor`` on them in arrival order.

    ``submit(data, name)`` returns a ``concurrent.futures.Future`` of ``(result, batch size)`` (``result``: the
    Predictor's dict for that image), or raises ``queue.Full`` at once when ``max_queue`` requests wait. The
    thread decodes each image (``solov2.data.image.read_rgb``: a bad one fails its own future with ``DataError``)
    and runs a batch of the consecutive images of one size that arrive within ``window_s`` of the first
    (at most ``max_batch``); an image of another size starts the next batch. Equal sizes mean no padding in the
    batch, so batching changes no result beyond float rounding.
    """

    def __init__(self, predictor, max_queue: int = MAX_QUEUE, max_batch: int | None = None,
                 window_s: float = BATCH_WINDOW_MS / 1000):
        self.predictor, self.window_s = predictor, window_s
        self.max_batch = max(1, max_batch or getattr(predictor, "batch_size", 1))
        self._jobs: queue.Queue[_Job] = queue.Queue(maxsize=max_queue)
        self._carry: _Job | None = None  # an image of another size than the batch's: first of the next batch
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="solov2-serve-inference", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Finish the batch running, then fail what still waits (the server is stopping)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        pending = [self._carry] if self._carry is not None else []
        while True:
            try:
                pending.append(self._jobs.get_nowait())
            except queue.Empty:
                break
        for job in pending:
            if not job.future.done():
                job.future.set_exception(RuntimeError("the server is stopping"))

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def waiting(self) -> int:
        return self._jobs.qsize()

    def submit(self, data: bytes, name: str) -> concurrent.futures.Future:
        job = _Job(data, name)
        self._jobs.put_nowait(job)  # queue.Full when max_queue wait: the caller answers 503
        return job.future

    def _loop(self) -> None:
        while not self._stop.is_set():
            first, self._carry = self._carry or self._take(0.1), None
            if first is None:
                continue
            batch, deadline = [first], time.monotonic() + self.window_s
            while len(batch) < self.max_batch:
                job = self._take(deadline - time.monotonic())
                if job is None:
                    break
                if job.image.shape != first.image.shape:
                    self._carry = job
                    break
                batch.append(job)
            self._run(batch)

    def _take(self, timeout: float) -> _Job | None:
        """The next job with its image decoded, waiting at most ``timeout`` s; jobs whose image does not decode
        (or whose request went away) are answered here and skipped."""
        end = time.monotonic() + max(timeout, 0.0)
        while True:
            try:
                left = end - time.monotonic()
                job = self._jobs.get(timeout=left) if left > 0 else self._jobs.get_nowait()
            except queue.Empty:
                return None
            if not job.future.set_running_or_notify_cancel():
                continue
            try:
                job.image = decode_image(job.data, job.name)
            except Exception as exc:  # DataError for a bad file; anything else is answered too, not lost
                job.future.set_exception(exc)
                continue
            job.data = b""  # the decoded image is what the batch needs
            return job

    def _run(self, batch: list[_Job]) -> None:
        try:
            results = self.predictor([job.image for job in batch])
        except Exception as exc:  # the model failed on this batch: its requests get 500, the server goes on
            log.exception("inference failed on a batch of %d", len(batch))
            for job in batch:
                job.future.set_exception(exc)
            return
        for job, result in zip(batch, results):
            job.image = None
            job.future.set_result((result, len(batch)))


def decode_image(data: bytes, name: str) -> np.ndarray:
    """An uploaded file's bytes -> ``(H, W, 3)`` uint8 RGB, upright, by ``solov2.data.image.read_rgb`` (the decoder
    of training and ``solov2 predict``); a file it cannot read raises ``DataError`` naming ``name``."""
    from solov2.data.image import read_rgb
    from solov2.errors import DataError
    suffix = Path(name).suffix if len(Path(name).suffix) <= 6 else ""
    with tempfile.TemporaryDirectory(prefix="solov2-serve-") as tmp:  # read_rgb reads paths
        path = os.path.join(tmp, "upload" + suffix)
        with open(path, "wb") as f:
            f.write(data)
        try:
            return read_rgb(path)
        except DataError as exc:
            raise DataError(str(exc).replace(path, name)) from None


def check_upload(data: bytes, name: str, max_bytes: int, max_pixels: int) -> tuple[int, str] | None:
    """``(HTTP status, message)`` for an upload refused before it is queued (empty, too large, not an image,
    too many pixels: the header is read, not the pixels), else None."""
    from PIL import Image
    if not data:
        return 400, f"{name}: empty upload"
    if len(data) > max_bytes:
        return 413, f"{name}: {_size(len(data))} is over the upload limit of {_size(max_bytes)}"
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
    except Exception as exc:  # PIL raises UnidentifiedImageError, and others on broken headers
        return 400, f"{name}: not an image file that can be read ({type(exc).__name__}: {str(exc)[:200]})"
    if width * height > max_pixels:
        return 413, (f"{name}: {width}x{height} is {width * height:,} pixels ({width * height / 1e6:.3g} megapixels), "
                     f"over the limit of {max_pixels:,} ({max_pixels / 1e6:.3g} megapixels)")
    return None


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


def instances_json(result: dict, class_names: list[str], cat_ids: list[int], score_thr: float) -> list[dict]:
    """The Predictor's result for one image (``masks`` (N, H, W) bool, ``labels``, ``scores``) -> the instances of
    ``/predict`` scoring at least ``score_thr``, best first: COCO RLE of the Fortran-ordered uint8 mask
    (``results_to_coco``, as ``results.json``), its box in xywh from the mask."""
    from solov2.evaluation.coco import results_to_coco
    keep = np.asarray(result["scores"]) >= score_thr
    kept = {k: np.asarray(result[k])[keep] for k in ("masks", "labels", "scores")}
    coco = results_to_coco(kept, 0, cat_ids)
    return [{"class_id": int(label), "class_name": class_names[label], "category_id": r["category_id"],
             "score": r["score"], "bbox": r["bbox"], "segmentation": r["segmentation"]}
            for label, r in zip(kept["labels"].tolist(), coco)]


def create_app(predictor, score_thr: float = 0.3, max_queue: int = MAX_QUEUE, max_batch: int | None = None,
               batch_window_ms: float = BATCH_WINDOW_MS, max_upload_bytes: int = MAX_UPLOAD_BYTES,
               max_pixels: int = MAX_PIXELS, model_name: str | None = None,
               request_timeout_s: float = REQUEST_TIMEOUT_S):
    """The FastAPI app serving ``predictor`` (a :class:`solov2.inference.predictor.Predictor`, made with
    ``score_thr=0`` so that a request may ask for any threshold; ``score_thr`` here is ``/predict``'s default).
    Its inference thread runs while the app's lifespan does (uvicorn, or ``with TestClient(app)``);
    ``app.state.queue`` is the :class:`InferenceQueue`."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, File, Form, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException

    from solov2.errors import DataError, one_line
    jobs = InferenceQueue(predictor, max_queue, max_batch, batch_window_ms / 1000)
    class_names = list(predictor.class_names)
    cat_ids = [int(c) for c in (getattr(predictor, "cat_ids", None) or range(1, len(class_names) + 1))]
    default_thr = score_thr
    name = model_name or os.path.basename(str(getattr(predictor, "checkpoint", None) or "random weights"))

    @asynccontextmanager
    async def lifespan(app):
        jobs.start()
        try:
            yield
        finally:
            await run_in_threadpool(jobs.stop)

    app = FastAPI(title="SOLOv2", version="1", lifespan=lifespan, description=(
        f"SOLOv2 instance segmentation with {name}. Uploads: at most {max_upload_bytes / 2**20:g} MiB and "
        f"{max_pixels / 1e6:g} megapixels; at most {max_queue} requests wait, more get 503."))
    app.state.queue = jobs

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(HTTPException)
    async def http_error(request, exc):
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request, exc):
        parts = [f"{'.'.join(str(x) for x in e.get('loc', ())[1:]) or 'request'}: {e.get('msg', '')}"
                 for e in exc.errors()]
        return error(422, "; ".join(parts) or "invalid request")

    @app.middleware("http")
    async def log_and_limit(request: Request, call_next):
        start = time.perf_counter()
        length = request.headers.get("content-length", "")
        # Refuse a body far over the limit before it is parsed (multipart framing adds a little to the file).
        if request.url.path == "/predict" and length.isdigit() and int(length) > max_upload_bytes + 65536:
            response = error(413, f"upload of {_size(int(length))} is over the limit of {_size(max_upload_bytes)}")
        else:
            response = await call_next(request)
        client = request.client.host if request.client else "-"
        note = getattr(request.state, "note", "")
        log.info("%s %s %s %d %.1f ms%s", client, request.method, request.url.path, response.status_code,
                 1000 * (time.perf_counter() - start), f" ({note})" if note else "")
        return response

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        html = (STATIC / "index.html").read_text(encoding="utf-8")
        return html.replace("{{SCORE_THR}}", f"{default_thr:g}")  # where the page's slider starts

    @app.get("/health")
    async def health():
        """``{"status": "ok", "model": NAME, "classes": [...]}`` (one class name per ``class_id``)."""
        if not jobs.running:
            return error(503, "the inference thread is not running")
        return {"status": "ok", "model": name, "classes": class_names}

    @app.post("/predict")
    async def predict(request: Request, image: UploadFile = File(..., description="an image file"),
                      score_thr: float | None = Form(None, ge=0.0, le=1.0, description=(
                          f"keep instances scoring at least this (default {default_thr:g})"))):
        """Instances in one image: class, score, box ``[x, y, w, h]`` and COCO RLE mask at the image's size."""
        upload = image.filename or "upload"
        data = await image.read()
        refused = check_upload(data, upload, max_upload_bytes, max_pixels)
        if refused:
            return error(*refused)
        try:
            future = jobs.submit(data, upload)
        except queue.Full:
            return error(503, f"busy: {jobs.waiting()} requests are waiting; try again shortly")
        del data
        try:
            result, batch = await asyncio.wait_for(asyncio.wrap_future(future), request_timeout_s)
        except DataError as exc:
            return error(400, one_line(exc))
        except asyncio.TimeoutError:
            return error(504, f"{upload}: no answer within {request_timeout_s:g} s")
        except Exception as exc:  # the model failed on this batch (logged by the queue), or the server is stopping
            if not jobs.running:
                return error(503, one_line(exc))
            return error(500, f"{upload}: inference failed: {type(exc).__name__}: {one_line(exc)[:300]}")
        threshold = default_thr if score_thr is None else score_thr
        instances = await run_in_threadpool(instances_json, result, class_names, cat_ids, threshold)
        height, width = result["masks"].shape[1:3]  # (N, H, W), N may be 0
        request.state.note = f"{upload}, {len(instances)} instances, batch of {batch}"
        return {"width": int(width), "height": int(height), "instances": instances}

    @app.exception_handler(Exception)
    async def internal_error(request, exc):
        return error(500, f"internal error: {type(exc).__name__}: {one_line(exc)[:300]}")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``solov2 serve``."""
    from solov2.apps.arguments import add_backend, add_device, add_precision, add_sources
    add_sources(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every network)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    add_device(parser)
    add_backend(parser)
    add_precision(parser)
    parser.add_argument("--score-thr", type=float, default=0.3, help="/predict's threshold when a request gives none")
    parser.add_argument("--queue", type=int, default=MAX_QUEUE, help="requests that may wait; more get 503")
    parser.add_argument("--batch-window-ms", type=float, default=BATCH_WINDOW_MS,
                        help="images of one size arriving within this of the first run as one batch (0: no wait)")
    parser.add_argument("--max-batch", type=int, default=4, help="images per batch at most (1: no batching)")
    parser.add_argument("--max-upload-mb", type=float, default=MAX_UPLOAD_BYTES / 2**20, help="upload limit, MiB")
    parser.add_argument("--max-megapixels", type=float, default=MAX_PIXELS / 1e6, help="image size limit")


def missing_packages() -> list[str]:
    return [m for m in ("fastapi", "uvicorn", "multipart") if importlib.util.find_spec(m) is None]


def main(args: argparse.Namespace) -> None:
    """``solov2 serve``: load the model, serve until Ctrl-C."""
    missing = missing_packages()
    if missing:
        raise ValueError(f"solov2 serve needs {', '.join(missing)}: {EXTRA}")
    import sys

    import uvicorn

    from solov2.apps.arguments import split_args_sources
    from solov2.engine.launch import resolve_device
    from solov2.inference.predictor import Predictor
    split_args_sources(args, "serve")
    config, checkpoint = args.config, args.checkpoint
    if not 0 <= args.score_thr <= 1 or args.queue < 1:
        raise ValueError("solov2 serve: --score-thr must be in [0, 1] and --queue at least 1")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    predictor = Predictor(config, checkpoint, device=resolve_device(args.device), score_thr=0.0,
                          batch_size=max(1, args.max_batch), precision=args.precision, backend=args.backend)
    app = create_app(predictor, args.score_thr, args.queue, batch_window_ms=args.batch_window_ms,
                     max_upload_bytes=int(args.max_upload_mb * 2**20), max_pixels=int(args.max_megapixels * 1e6))
    log.info("serving %s (%s, %s) on http://%s:%d : page /, API /health /predict, docs /docs; Ctrl-C stops",
             os.path.basename(checkpoint), predictor.backend, predictor.precision, args.host, args.port)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.info("listening on %s: other machines can reach it; it has no authentication", args.host)
    try:
        uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="warning",
                    timeout_graceful_shutdown=30)
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled, after its clean shutdown
        pass
    log.info("stopped")

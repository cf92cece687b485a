"""Load check of `solov2 serve` on loopback: N requests, C at a time; prints how many were answered and the p50/p95
latency. Starts `solov2 serve CHECKPOINT` on a free port of 127.0.0.1 (and stops it with Ctrl-C's signal), or
loads a server already running on this machine (--url, 127.0.0.1 / localhost only).

    python benchmarks/serve_load.py runs/demo/latest.pth                      # 60 requests, 6 at a time
    python benchmarks/serve_load.py --url http://127.0.0.1:8000 --requests 60 --concurrency 6

Bounded: each request waits at most --timeout s, the whole run at most --deadline s. The image: one of the built-in
synthetic shapes (--image-size), or --image FILE.
"""
from __future__ import annotations

import argparse
import io
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np


def multipart(image: bytes, name: str) -> tuple[bytes, str]:
    boundary = "solov2loadboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def post(url: str, body: bytes, content_type: str, timeout: float) -> tuple[int, float]:
    """(HTTP status or 0 for no answer, seconds)."""
    start = time.perf_counter()
    request = urllib.request.Request(f"{url}/predict", data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            json.loads(answer.read())
            status = answer.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError:
        status = 0
    return status, time.perf_counter() - start


def wait_for_health(url: str, proc: subprocess.Popen | None, timeout: float) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                return json.loads(answer.read())
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise SystemExit(f"the server exited with {proc.returncode}")
            time.sleep(0.25)
    raise SystemExit(f"{url}/health: no answer within {timeout:g} s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", nargs="?", help="start `solov2 serve` with this checkpoint (or .onnx / .xml)")
    p.add_argument("--url", help="a running server on this machine instead (http://127.0.0.1:PORT)")
    p.add_argument("--requests", type=int, default=60)
    p.add_argument("--concurrency", type=int, default=6)
    p.add_argument("--image", help="image file to send (default: a synthetic shapes image)")
    p.add_argument("--image-size", type=int, default=96, help="side of the synthetic image")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds one request may take")
    p.add_argument("--deadline", type=float, default=600.0, help="seconds the whole run may take")
    p.add_argument("--serve-args", default="", help="more options of `solov2 serve`, e.g. '--batch-window-ms 0'")
    args = p.parse_args()
    if (args.checkpoint is None) == (args.url is None):
        p.error("give a CHECKPOINT to serve, or --url of a running server")
    if args.url and urllib.parse.urlsplit(args.url).hostname not in ("127.0.0.1", "localhost"):
        p.error("--url: loopback only (127.0.0.1 or localhost)")
    if args.image:
        with open(args.image, "rb") as f:
            image, name = f.read(), args.image
    else:
        from PIL import Image

        from solov2.data import SyntheticShapes
        pixels = SyntheticShapes(num_images=1, seed=0, image_size=args.image_size)[0][0].permute(1, 2, 0).numpy()
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, format="PNG")
        image, name = out.getvalue(), f"shapes{args.image_size}.png"
    proc, url = None, args.url
    if args.checkpoint:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        command = [sys.executable, "-m", "solov2.cli", "serve", args.checkpoint, "--host", "127.0.0.1",
                   "--port", str(port), *args.serve_args.split()]
        proc = subprocess.Popen(command, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
    try:
        health = wait_for_health(url, proc, 120)
        body, content_type = multipart(image, name)
        post(url, body, content_type, args.timeout)  # warm-up, not counted
        start = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            futures = [pool.submit(post, url, body, content_type, args.timeout) for _ in range(args.requests)]
            done, not_done = wait(futures, timeout=args.deadline)
            for f in not_done:
                f.cancel()
        wall = time.perf_counter() - start
        results = [f.result() for f in done]
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    ok = [t for status, t in results if status == 200]
    codes = sorted({status for status, _ in results if status != 200})
    print(f"model {health['model']}, image {name} ({len(image) / 1024:.0f} KiB), {args.requests} requests, "
          f"{args.concurrency} at a time")
    print(f"answered 200: {len(ok)}/{args.requests}" + (f" (others: {codes})" if codes else "")
          + f" in {wall:.1f} s ({len(ok) / wall:.1f} requests/s)")
    if ok:
        p50, p95 = np.percentile(np.array(ok) * 1000, [50, 95])
        print(f"latency p50 {p50:.0f} ms, p95 {p95:.0f} ms")
    return 0 if len(ok) == args.requests else 1


if __name__ == "__main__":
    sys.exit(main())

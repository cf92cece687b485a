"""Speed benchmark of a SOLOv2 model as the :class:`solov2.Predictor` runs it: per backend and precision, the
network and end to end, on real images, with each row's own peak memory.

``run_benchmark`` is what ``solov2 benchmark CONFIG [CHECKPOINT]`` (or ``solov2 benchmark CHECKPOINT``) runs;
``main(argv)`` is its command line::

    python -m solov2.apps.benchmark runs/demo/latest.pth --threads 2 --input-size 448 768 --backend torch onnxruntime

Images: the built-in shapes (:func:`solov2.data.synthetic.render_shapes`, the demo's data) drawn at
``--input-size``, ``--num-images`` of them (seed ``--seed``), or the images of ``--images DIR`` at their own
sizes; each call takes the next ``batch`` of them, round robin, so a trained model detects what it would on
such pictures (random weights detect nothing: their category prior, 0.01, is below ``score_thr``).

Rows: one :class:`~solov2.Predictor` per backend (``predictor.BACKENDS``) and precision (``auto``, the
Predictor's default, is resolved and named; fp32 is always measured, as the reference; the exported-graph
backends run fp32 only, other combinations are skipped), with its defaults otherwise (``optimize``) and
``score_thr=0`` (every instance the model's ``test_cfg`` keeps is returned and counted). All rows' calls are
timed interleaved in one loop (:func:`time_interleaved`), so a change of load hits every row alike.

* "end to end" is ``predictor(images)``: resize, normalize, pad, network, post-processing (Matrix NMS, masks
  at the input size), NumPy results.
* "network" is the part of those same calls spent in the network: ``model.predict_cells`` (backbone, FPN,
  heads; lazily, as inference runs it: with no candidate above ``score_thr`` the kernel and mask branches are
  skipped) for ``torch``, the graph's ``run`` for exported backends. Timed inside each end-to-end call, it is
  never above it (a separate ``forward_features`` call runs the whole network and can take longer than an
  empty frame's end to end; that was the earlier benchmark's inversion).
* peak memory: each row runs again in a fresh Python process (:func:`row_memory`): load the Predictor, reset
  the peak to the current resident set (Linux ``/proc/self/clear_refs``), then three calls, the first one
  included (it allocates the buffers the next calls reuse, and exports the graph for the exported backends);
  "peak MB" is the peak RSS (``VmHWM``) during those calls, "model MB" the RSS after loading. A process of
  its own per row is what makes the figure the row's: in one process, memory that an earlier row freed stays
  mapped by the allocator, and a ``getrusage`` peak never goes down. Without ``clear_refs`` (not Linux) the
  peak is the process's ``getrusage`` peak, loading included; on CUDA ``torch.cuda.max_memory_allocated``
  (and ``memory_allocated`` after loading).

The helpers :func:`time_interleaved` and :func:`summarize` are shared with the scripts in ``benchmarks/``.
"""
from __future__ import annotations

import argparse
import ast
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np
import torch

from solov2.precision import PRECISION_CHOICES, resolve_precision

__all__ = ["run_benchmark", "time_interleaved", "summarize", "peak_memory_mb", "format_table", "main",
           "add_arguments", "benchmark_images", "row_memory"]


def time_interleaved(fns: dict[str, Callable[[], Any]], iters: int, warmup: int,
                     sync: Callable[[], None] | None = None) -> dict[str, list[float]]:
    """Time several callables in the same loop, in rotating order, so that load changes hit all of them.

    Each callable runs ``warmup`` untimed calls first; then, ``iters`` times, every callable runs once,
    the starting one rotating each round. ``sync`` (e.g. ``torch.cuda.synchronize``) is called around
    each timed call. Returns ``{name: [seconds per call, ...]}``.
    """
    sync = sync or (lambda: None)
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    sync()
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(iters):
        for k in range(len(names)):
            name = names[(i + k) % len(names)]
            sync()
            start = time.perf_counter()
            fns[name]()
            sync()
            times[name].append(time.perf_counter() - start)
    return times


def summarize(seconds: Sequence[float], images_per_call: int = 1) -> dict[str, float]:
    """Median, 90th percentile and mean in milliseconds, and images per second at the median."""
    ordered = sorted(seconds)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    median = statistics.median(ordered)
    return {"median_ms": median * 1e3, "p90_ms": p90 * 1e3, "mean_ms": statistics.fmean(ordered) * 1e3,
            "images_per_s": images_per_call / median}


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: ``torch.cuda.max_memory_allocated`` since the last reset. CPU: the process's peak RSS so far
    (``getrusage``; it never decreases, so it includes everything run before in the process)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2 ** 20 if sys.platform == "darwin" else rss / 2 ** 10  # bytes on macOS, KiB on Linux


def benchmark_images(image_size: Sequence[int] = (448, 768), num_images: int = 8, seed: int = 0,
                     images: str | None = None) -> list[np.ndarray]:
    """The benchmark's ``(H, W, 3)`` uint8 RGB images: those under the folder ``images`` (recursively, sorted, at
    their own sizes), else ``num_images`` built-in shapes pictures of ``image_size`` drawn from ``seed``."""
    if images is not None:
        from solov2.data.image import images_in_folder, read_rgb
        return [read_rgb(f) for f in images_in_folder(images)]
    from solov2.data.synthetic import render_shapes
    h, w = image_size
    return [render_shapes(np.random.default_rng([seed, i]), (h, w))[0] for i in range(num_images)]


def _batches(pool: list[np.ndarray], batch: int) -> list[list[np.ndarray]]:
    """Consecutive batches of the pool, wrapping around, until every image has been in one."""
    count = -(-len(pool) // batch)
    return [[pool[(k * batch + j) % len(pool)] for j in range(batch)] for k in range(count)]


def _make_predictor(spec: dict):
    """The row's Predictor: ``spec`` holds config, checkpoint, overrides, device, batch, optimize, precision,
    backend."""
    from solov2.checkpoint.model_config import resolve_model
    from solov2.inference.predictor import Predictor
    resolved = resolve_model(spec["config"], spec["checkpoint"], spec["overrides"])
    return Predictor(resolved.cfg, resolved.checkpoint, device=spec["device"], score_thr=0.0,
                     batch_size=spec["batch"], optimize=spec["optimize"], precision=spec["precision"],
                     backend=spec["backend"])


def _network_entry(predictor) -> tuple[Any, str] | None:
    """The object and method that run the network inside ``predictor(images)``: the model's ``predict_cells``
    (torch) or the exported graph's ``run`` (made on the first call); None if this backend has neither."""
    if predictor.backend == "torch":
        return predictor.model, "predict_cells"
    exported = getattr(predictor, "_exported", None)
    return (exported, "run") if exported is not None and hasattr(exported, "run") else None


def _time_network(predictor, sink: list[float], sync: Callable[[], None]) -> bool:
    """Wrap the network entry of ``predictor`` so that each call adds its seconds to ``sink[-1]``."""
    entry = _network_entry(predictor)
    if entry is None:
        return False
    owner, name = entry
    inner = getattr(owner, name)

    def timed(*args, **kwargs):
        sync()
        start = time.perf_counter()
        out = inner(*args, **kwargs)
        sync()
        sink[-1] += time.perf_counter() - start
        return out

    setattr(owner, name, timed)  # an instance attribute: the class's method stays as it is
    return True


def row_memory(spec: dict, timeout: float = 600) -> dict[str, float]:
    """Peak memory of one row, measured in a fresh Python process: ``{"peak_mb", "model_mb"}`` (see the module
    docstring). Raises ``RuntimeError`` with the child's last error line if it fails."""
    proc = subprocess.run([sys.executable, "-c", "from solov2.apps.benchmark import _memory_child; _memory_child()"],
                          input=repr(spec), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"memory of row {spec['backend']} {spec['precision']}: {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _memory_child() -> None:
    """The process :func:`row_memory` starts: the spec on stdin (a Python literal), JSON on stdout."""
    import gc
    spec = ast.literal_eval(sys.stdin.read())
    if spec.get("num_threads"):
        torch.set_num_threads(spec["num_threads"])
    device = torch.device(spec["device"])
    batches = _batches(benchmark_images(spec["image_size"], spec["num_images"], spec["seed"], spec["images"]),
                       spec["batch"])
    predictor = _make_predictor(spec)
    gc.collect()
    if device.type == "cuda":
        model_mb = torch.cuda.memory_allocated(device) / 2 ** 20
        torch.cuda.reset_peak_memory_stats(device)
    else:
        model_mb = _rss_mb("VmRSS")
        reset = _reset_peak_rss()
    with torch.inference_mode():
        for k in range(3):  # the first call included: it allocates the buffers (and exports, for those backends)
            predictor(batches[k % len(batches)])
    if device.type == "cuda":
        peak, method = peak_memory_mb(device), "cuda max_memory_allocated"
    elif reset:
        peak, method = _rss_mb("VmHWM"), "peak RSS (VmHWM, reset after loading)"
    else:  # no /proc/self/clear_refs (not Linux): the process's peak, loading included
        peak, method = peak_memory_mb(device), "process peak RSS (getrusage), loading included"
    print(json.dumps({"peak_mb": peak, "model_mb": model_mb, "method": method}))


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (``VmHWM``) to its current RSS: Linux ``/proc/self/clear_refs``; False
    where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _rss_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process from ``/proc/self/status``; elsewhere the peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 2 ** 10  # kB
    except (OSError, ValueError, IndexError):
        pass
    return peak_memory_mb(torch.device("cpu"))


def run_benchmark(config_path: str, checkpoint: str | None = None, device: str = "cpu",
                  image_size: tuple[int, int] = (448, 768), batch: int = 1, iters: int = 20, warmup: int = 5,
                  optimize: bool = True,
                  overrides: dict[str, Any] | None = None,
                  num_threads: int | None = None, verbose: bool = True, seed: int = 0,
                  precisions: Sequence[str] = ("auto",), backends: Sequence[str] = ("torch",),
                  images: str | None = None, num_images: int = 8, memory: bool = True) -> dict[str, Any]:
    """Measure latency, throughput, detections and peak memory of Predictors of a model on real images.

    Args:
        config_path: the model's config file, or a checkpoint written by ``solov2 train`` (which carries its
            config; ``checkpoint`` is then None); ``overrides`` are dotted keys applied to the config
            (e.g. ``{"model.backbone.depth": 18, "model.neck.in_channels": [64, 128, 256, 512]}``).
        checkpoint: weights to load (random initialisation if None); with a config, the architecture comes
            from the checkpoint where it carries one (:func:`solov2.checkpoint.model_config.resolve_model`).
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        image_size: ``(H, W)`` of the shapes images (not used with ``images``); the model resizes them to its
            ``test_scale``.
        batch: images per call.
        iters, warmup: timed and untimed calls per row (after one first call per row that is not timed either:
            it exports the graph for the exported backends).
        precisions: besides fp32 (always measured): ``"auto"`` (the Predictor's default, resolved per backend),
            ``"bf16"``, ``"fp16"`` (CUDA).
        backends: ``solov2.inference.predictor.BACKENDS`` to measure.
        optimize: the Predictor's ``optimize`` (default on, as the Predictor).
        images: a folder of images to use instead of the shapes; ``num_images``: shapes pictures to draw.
        memory: measure each row's peak memory in a fresh process (:func:`row_memory`); else ``peak_memory_mb``
            is None.
        num_threads: ``torch.set_num_threads`` for the run (CPU, and the memory processes), or None to keep it.
        verbose: print the table.

    Returns: ``{"config", "checkpoint", "device", "num_threads", "image_size", "images", "batch", "iters",
    "warmup", "optimize", "torch", "memory", "rows", "skipped", "results"}``; ``rows`` lists
    ``(backend, precision)``; ``results`` maps ``network_<p>`` and ``end_to_end_<p>`` (torch) or
    ``network_<backend>_<p>`` / ``end_to_end_<backend>_<p>`` to ``{"median_ms", "p90_ms", "mean_ms",
    "images_per_s", "peak_memory_mb"}``, end-to-end rows also ``"detections_per_image"`` and ``"model_mb"``.
    """
    from solov2.inference.predictor import BACKENDS
    dev = torch.device(device)
    wanted = list(precisions)
    if "fp16" in wanted and dev.type != "cuda":
        raise ValueError(f"fp16 (autocast float16) is measured on CUDA only, got device {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available")
    for name in backends:
        if name not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    for name in wanted:
        if name not in PRECISION_CHOICES:
            raise ValueError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {name!r}")
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    torch.manual_seed(seed)
    pool = benchmark_images(image_size, num_images, seed, images)
    batches = _batches(pool, batch)
    rows, skipped = [], []
    for backend in backends:
        for name in ["fp32", *wanted]:
            resolved = resolve_precision(name, dev, backend)
            if backend != "torch" and resolved != "fp32":
                skipped.append((backend, resolved))  # the exported graphs run fp32 (Predictor refuses others)
            elif (backend, resolved) not in rows:
                rows.append((backend, resolved))
    if not rows:
        raise ValueError(f"nothing to measure: backends {list(backends)} run fp32 only, precisions asked {wanted}")
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    base = {"config": config_path, "checkpoint": checkpoint, "overrides": overrides, "device": str(dev),
            "batch": batch, "optimize": optimize, "image_size": list(image_size), "num_images": num_images,
            "seed": seed, "images": images, "num_threads": num_threads}
    fns, network, detections, first = {}, {}, {}, None
    for backend, precision in rows:
        key = precision if backend == "torch" else f"{backend}_{precision}"
        predictor = _make_predictor({**base, "backend": backend, "precision": precision})
        first = first or predictor
        predictor(batches[0])  # the first call: exports the graph (exported backends), allocates
        network[key], detections[key] = [0.0], []
        timed_network = _time_network(predictor, network[key], sync)

        def call(predictor=predictor, key=key, counter=iter(range(10 ** 9))):
            network[key].append(0.0)
            out = predictor(batches[next(counter) % len(batches)])
            detections[key].append(sum(len(r["scores"]) for r in out))

        fns[key] = call
        if not timed_network:
            network.pop(key)
    with torch.inference_mode():
        times = time_interleaved(fns, iters, warmup, sync if dev.type == "cuda" else None)
    results: dict[str, dict] = {}
    method = "not measured"
    for (backend, precision), key in zip(rows, fns):
        if key in network:  # the timed calls are the last `iters`
            results[f"network_{key}"] = {**summarize(network[key][-iters:], batch), "peak_memory_mb": None}
        stats = summarize(times[key], batch)
        stats["detections_per_image"] = statistics.fmean(detections[key][-iters:]) / batch
        stats["peak_memory_mb"] = stats["model_mb"] = None
        if memory:
            mem = row_memory({**base, "backend": backend, "precision": precision})
            stats["peak_memory_mb"], stats["model_mb"], method = mem["peak_mb"], mem["model_mb"], mem["method"]
        results[f"end_to_end_{key}"] = stats
    image = torch.from_numpy(np.ascontiguousarray(pool[0])).permute(2, 0, 1)
    network_input = [batch, *first.model.transform([image], training=False)[0].tensors.shape[1:]]
    report = {
        "config": str(config_path), "checkpoint": first.checkpoint, "device": str(dev),
        "num_threads": torch.get_num_threads(), "image_size": list(image_size) if images is None else None,
        "images": images or f"{len(pool)} built-in shapes images (seed {seed})", "network_input": network_input,
        "batch": batch, "iters": iters, "warmup": warmup, "optimize": optimize, "torch": torch.__version__,
        "rows": rows, "skipped": skipped,
        "memory": method + ", in a fresh process per row" if memory else method,
        "results": results,
    }
    if verbose:
        print(format_table(report))
    return report


def format_table(report: dict[str, Any]) -> str:
    """The report of :func:`run_benchmark` as a small text table."""
    dev = report["device"] + (f", {report['num_threads']} threads" if report["device"] == "cpu" else "")
    size = (f"images {report['image_size'][0]}x{report['image_size'][1]}" if report["image_size"] else "input")
    lines = [f"{report['config']}  device={dev}  {size} ({report['images']}) -> network input "
             f"{'x'.join(map(str, report['network_input']))}  iters {report['iters']} (+{report['warmup']} "
             f"warm-up)  optimize={report['optimize']}",
             f"{'row':<30}{'median ms':>11}{'p90 ms':>10}{'images/s':>10}{'peak MB':>10}{'model MB':>10}"
             f"{'dets/img':>10}"]
    for mode, r in report["results"].items():
        dets = f"{r['detections_per_image']:.1f}" if "detections_per_image" in r else "-"
        mem = "".join(f"{r[k]:>10.0f}" if r.get(k) is not None else f"{'-':>10}"
                      for k in ("peak_memory_mb", "model_mb"))
        lines.append(f"{mode:<30}{r['median_ms']:>11.1f}{r['p90_ms']:>10.1f}{r['images_per_s']:>10.2f}{mem}{dets:>10}")
    if report["skipped"]:
        lines.append("skipped (exported graphs run fp32): " + ", ".join(f"{b} {p}" for b, p in report["skipped"]))
    lines.append(f"network: inside the end-to-end calls; peak memory: {report['memory']}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``solov2 benchmark`` command's arguments."""
    from solov2.apps.arguments import add_cfg_options, add_device
    from solov2.inference.predictor import BACKENDS
    parser.add_argument("config", help="model config (a .py file or a packaged config's name), or a checkpoint "
                        "written by `solov2 train` alone")
    parser.add_argument("checkpoint", nargs="?", default=None,
                        help="weights after a config (random initialisation if left out)")
    add_device(parser, default="cpu")
    parser.add_argument("--image-size", nargs=2, type=int, default=(448, 768), metavar=("H", "W"),
                        help="size of the built-in shapes images; the model resizes them to its test scale")
    parser.add_argument("--images", metavar="DIR", default=None,
                        help="a folder of images to use (at their own sizes) instead of the built-in shapes")
    parser.add_argument("--num-images", type=int, default=8, help="built-in shapes images to draw")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shapes images")
    parser.add_argument("--batch", type=int, default=1, help="images per call")
    parser.add_argument("--iters", type=int, default=20, help="timed calls per row")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls per row first")
    parser.add_argument("--backend", nargs="+", choices=list(BACKENDS), default=["torch"],
                        help="Predictor backends to measure")
    parser.add_argument("--precision", nargs="+", choices=list(PRECISION_CHOICES), default=["auto"],
                        help="precisions to measure besides fp32 (always measured, as the reference); auto: the "
                             "Predictor's default (bf16 on CPUs with native bf16, fp32 elsewhere); fp16: CUDA only")
    parser.add_argument("--no-optimize", dest="optimize", action="store_false",
                        help="Predictors without their optimization (default: optimized, as the Predictor runs)")
    parser.add_argument("--no-memory", dest="memory", action="store_false",
                        help="skip each row's peak memory (default: measured from a fresh process per row)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    add_cfg_options(parser)
    parser.add_argument("--json", default=None, help="also write the report to this JSON file")


def main(args: argparse.Namespace) -> None:
    """Run the benchmark that ``args`` (from :func:`add_arguments`, ``cfg_options`` already a dict) describe."""
    for name in ("batch", "iters", "num_images"):
        if getattr(args, name) < 1:
            raise ValueError(f"solov2 benchmark: --{name.replace('_', '-')} must be >= 1")
    try:
        report = run_benchmark(args.config, args.checkpoint, device=args.device, image_size=tuple(args.image_size),
                               batch=args.batch, iters=args.iters, warmup=max(args.warmup, 0),
                               precisions=args.precision, backends=args.backend, optimize=args.optimize,
                               num_threads=args.threads, images=args.images, num_images=args.num_images,
                               seed=args.seed, memory=args.memory, overrides=args.cfg_options)
    except RuntimeError as exc:  # a failed memory process: one line, as every command's errors
        raise ValueError(f"solov2 benchmark: {exc}") from None
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)

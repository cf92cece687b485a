"""Speed benchmark of a SOLOv2 config: the network alone and end to end, fp32 (and fp16 on CUDA).

``run_benchmark`` is what ``solov2 benchmark CONFIG [CHECKPOINT]`` (or ``solov2 benchmark CHECKPOINT``) runs;
``main(argv)`` is its command line::

    python -m solov2.benchmark configs/solov2/cityscapes/solov2_light_448_r50_fpn_2gpu_3x.py \\
        --device cpu --threads 2 --input-size 448 768 --iters 20

"Network alone" is ``model.forward_features`` on the padded, normalized batch that the model's own
transform makes from the input images. "End to end" is ``model(images)`` in eval mode: resize, normalize,
pad, network, post-processing (Matrix NMS, masks resized back to the input size). The end-to-end time
depends on how many candidates pass the score threshold, so the mean number of detections is reported too
(a randomly initialised SOLOv2 detects nothing: its category prior is 0.01, below ``score_thr``).

The helpers :func:`time_interleaved` and :func:`summarize` are shared with the scripts in ``benchmarks/``.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from typing import Any, Callable, Sequence

import torch

from .checkpoint_config import resolve_model
from .config import parse_overrides
from .precision import PRECISIONS, precision_autocast
from .predictor import load_model

__all__ = ["run_benchmark", "time_interleaved", "summarize", "peak_memory_mb", "format_table", "main",
           "add_arguments"]


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


def _measure(fn: Callable[[], Any], iters: int, warmup: int, device: torch.device, batch: int) -> dict:
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    stats = summarize(time_interleaved({"fn": fn}, iters, warmup, sync)["fn"], batch)
    stats["peak_memory_mb"] = peak_memory_mb(device)
    return stats


def run_benchmark(config_path: str, checkpoint: str | None = None, device: str = "cpu",
                  input_size: tuple[int, int] = (448, 768), batch: int = 1, iters: int = 20, warmup: int = 3,
                  fp16: bool = False, bf16: bool = False, optimize: bool = False,
                  overrides: dict[str, Any] | None = None,
                  num_threads: int | None = None, verbose: bool = True, seed: int = 0) -> dict[str, Any]:
    """Measure latency, throughput and peak memory of a config's model on random images.

    Args:
        config_path: the model's config file, or a checkpoint written by ``solov2 train`` (which carries its
            config; ``checkpoint`` is then None); ``overrides`` are dotted keys applied to the config
            (e.g. ``{"model.backbone.depth": 18, "model.neck.in_channels": [64, 128, 256, 512]}``).
        checkpoint: weights to load (random initialisation if None); with a config, the architecture comes
            from the checkpoint where it carries one (:func:`solov2.checkpoint_config.resolve_model`).
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        input_size: ``(H, W)`` of the input images; the model resizes them to its ``test_scale``.
        batch: images per call.
        iters, warmup: timed and untimed calls per mode.
        fp16: also measure under ``torch.autocast(dtype=float16)``; CUDA only.
        bf16: also measure under ``torch.autocast(dtype=bfloat16)`` (CPU or CUDA).
        optimize: benchmark :func:`solov2.optimize.optimize_for_inference` of the model (BatchNorm folded,
            channels_last, Winograd on CPU), as :class:`solov2.Predictor` runs it by default.
        num_threads: ``torch.set_num_threads`` for the run (CPU), or None to keep the current setting.
        verbose: print the table.

    Returns: ``{"config", "device", "num_threads", "input_size", "network_input", "batch", "iters",
    "warmup", "optimize", "torch", "memory", "results"}``; ``results`` maps each mode (``"network_fp32"``,
    ``"end_to_end_fp32"``, and likewise ``_fp16`` / ``_bf16``) to ``{"median_ms",
    "p90_ms", "mean_ms", "images_per_s", "peak_memory_mb"}``, end-to-end modes also ``"detections_per_image"``.
    """
    dev = torch.device(device)
    if fp16 and dev.type != "cuda":
        raise ValueError(f"fp16 (autocast float16) is measured on CUDA only, got device {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available")
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    torch.manual_seed(seed)
    resolved = resolve_model(config_path, checkpoint, overrides)
    model, _ = load_model(resolved.cfg, resolved.ckpt, dev, optimize, name=resolved.checkpoint)
    h, w = input_size
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, device=dev) for _ in range(batch)]
    padded = model.transform(images, training=False)[0].tensors

    precisions = [name for name, wanted in (("fp32", True), ("fp16", fp16), ("bf16", bf16)) if wanted]
    results: dict[str, dict] = {}
    detections: list[int] = []

    def end_to_end():
        out = model(images)
        detections.append(sum(len(r["scores"]) for r in out))

    with torch.inference_mode():
        for name in precisions:
            with precision_autocast(PRECISIONS[name], dev):
                results[f"network_{name}"] = _measure(lambda: model.forward_features(padded), iters, warmup,
                                                      dev, batch)
                detections.clear()
                stats = _measure(end_to_end, iters, warmup, dev, batch)
                stats["detections_per_image"] = statistics.fmean(detections) / batch
                results[f"end_to_end_{name}"] = stats
    report = {
        "config": str(config_path), "checkpoint": resolved.checkpoint, "device": str(dev),
        "num_threads": torch.get_num_threads(), "input_size": [h, w],
        "network_input": list(padded.shape), "batch": batch, "iters": iters, "warmup": warmup,
        "optimize": optimize, "torch": torch.__version__,
        "memory": "cuda max_memory_allocated" if dev.type == "cuda" else "process peak RSS (getrusage)",
        "results": results,
    }
    if verbose:
        print(format_table(report))
    return report


def format_table(report: dict[str, Any]) -> str:
    """The report of :func:`run_benchmark` as a small text table."""
    dev = report["device"] + (f", {report['num_threads']} threads" if report["device"] == "cpu" else "")
    lines = [f"{report['config']}  device={dev}  input {report['input_size'][0]}x{report['input_size'][1]}"
             f" -> network input {'x'.join(map(str, report['network_input']))}  batch {report['batch']}"
             f"  iters {report['iters']} (+{report['warmup']} warm-up)  optimize={report['optimize']}",
             f"{'mode':<18}{'median ms':>11}{'p90 ms':>10}{'images/s':>10}{'peak MB':>10}{'dets/img':>10}"]
    for mode, r in report["results"].items():
        dets = f"{r['detections_per_image']:.1f}" if "detections_per_image" in r else "-"
        lines.append(f"{mode:<18}{r['median_ms']:>11.1f}{r['p90_ms']:>10.1f}{r['images_per_s']:>10.2f}"
                     f"{r['peak_memory_mb']:>10.0f}{dets:>10}")
    lines.append(f"peak memory: {report['memory']}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``benchmark`` command's arguments (shared with ``solov2 benchmark``)."""
    parser.add_argument("config", help="model config file (.py), or a checkpoint written by `solov2 train` alone")
    parser.add_argument("checkpoint", nargs="?", default=None,
                        help="weights after a config (random initialisation if left out)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--input-size", nargs=2, type=int, default=(448, 768), metavar=("H", "W"),
                        help="input image size (default 448 768); the model resizes it to its test scale")
    parser.add_argument("--batch", type=int, default=1, help="images per call (default 1)")
    parser.add_argument("--iters", type=int, default=20, help="timed calls per mode (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per mode first (default 3)")
    parser.add_argument("--precision", nargs="+", choices=list(PRECISIONS), default=["fp32"],
                        help="precisions to measure, as predict/eval's --precision (autocast bf16: CPU or CUDA; "
                             "fp16: CUDA only); fp32 is always measured, as the reference (default fp32)")
    for name in ("bf16", "fp16"):  # the older spelling, kept working: --bf16 is --precision fp32 bf16
        parser.add_argument(f"--{name}", dest="precision", action="append_const", const=name, help=argparse.SUPPRESS)
    parser.add_argument("--optimize", action="store_true",
                        help="solov2.optimize.optimize_for_inference first (BatchNorm folded, channels_last, "
                             "Winograd on CPU), as the Predictor runs it")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument("--cfg-options", nargs="+", default=None, metavar="KEY=VALUE",
                        help="config overrides, e.g. model.backbone.depth=18")
    parser.add_argument("--json", default=None, help="also write the report to this JSON file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m solov2.benchmark CONFIG [CHECKPOINT] [options]``; returns the exit status."""
    args = add_arguments(argparse.ArgumentParser(prog="solov2 benchmark", description=__doc__.split("\n")[0])
                         ).parse_args(argv)
    return run_from_args(args)


def run_from_args(args: argparse.Namespace) -> int:
    """Run the benchmark that parsed ``args`` (from :func:`add_arguments`) describe; returns the exit status."""
    for name in ("batch", "iters"):
        if getattr(args, name) < 1:
            print(f"solov2 benchmark: error: --{name} must be >= 1", file=sys.stderr)
            return 2
    try:
        report = run_benchmark(args.config, args.checkpoint, device=args.device, input_size=tuple(args.input_size),
                               batch=args.batch, iters=args.iters, warmup=max(args.warmup, 0),
                               fp16="fp16" in args.precision, bf16="bf16" in args.precision, optimize=args.optimize,
                               num_threads=args.threads,
                               overrides=parse_overrides(args.cfg_options) if args.cfg_options else None)
    except ValueError as exc:  # ConfigError, CheckpointError, bad device or fp16 on CPU: one line, no traceback
        print(f"solov2 benchmark: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        import json
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

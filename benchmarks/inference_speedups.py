"""Each inference speedup of ``solov2.inference.optimize`` on and off, for the seed's network at 448x768 on CPU.

Variants of ``forward_features`` (the network alone, random weights, one 448x768 image), timed in one
loop, interleaved, median of ``--iters`` after ``--warmup``:

    no_grad                       the model as built, under torch.no_grad() (what model.inference uses)
    inference_mode                the same under torch.inference_mode()
    inference_mode+fuse           BatchNorm folded into the convs (fuse_conv_bn)
    inference_mode+channels_last  NHWC weights (to_channels_last), NCHW input as the transform makes it
    inference_mode+fuse+cl        both
    inference_mode+fuse+winograd  fused, the wide 3x3 convs on NNPACK's Winograd (use_winograd), NCHW
    inference_mode+fuse+cl+wino   all three: optimize_for_inference(), what solov2.Predictor runs by default
    bf16 fuse+cl+wino             that under torch.autocast("cpu", bfloat16) (Winograd steps aside: fp32 only)
    inference_mode+fuse+compile   torch.compile(forward_features) of the fused model, if it compiles within
                                  --compile-timeout seconds (otherwise skipped with a note)

and end to end (``model([image])``, post-processing included) without and with ``optimize_for_inference``,
and with it in bf16. Each variant's largest output difference from the model as built is printed first.

    .venv/bin/python benchmarks/inference_speedups.py --iters 10
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import os
import signal
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from solov2 import build_model, load_config  # noqa: E402
from solov2.apps.benchmark import summarize, time_interleaved  # noqa: E402
from solov2.inference.optimize import fuse_conv_bn, optimize_for_inference, to_channels_last  # noqa: E402
from solov2.inference.winograd import use_winograd  # noqa: E402

CONFIG = "configs/solov2/cityscapes/solov2_light_448_r50_fpn_2gpu_3x.py"


class _Timeout(Exception):
    pass


def try_compile(model, x: torch.Tensor, timeout: int):
    """``(compiled forward_features, compile seconds, None)`` or ``(None, None, reason)``."""
    def on_alarm(signum, frame):
        raise _Timeout(f"did not compile within {timeout} s")
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(timeout)
    start = time.perf_counter()
    try:
        fn = torch.compile(model.forward_features)
        with torch.inference_mode():
            fn(x)  # compiles
        return fn, time.perf_counter() - start, None
    except Exception as exc:  # a missing compiler, an unsupported op, or the timeout
        return None, None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def in_mode(mode, fn):
    def run():
        with mode():
            return fn()
    return run


@contextlib.contextmanager
def bf16_inference():
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        yield


def print_differences(fns: dict, base, x: torch.Tensor) -> None:
    """Largest |output - reference| / max |reference| of each network variant (reference: the model as built)."""
    with torch.inference_mode():
        ref = _flat(base.forward_features(x))
    for name, fn in fns.items():
        err = max(((o.float() - r).abs().max() / r.abs().max()).item() for o, r in zip(_flat(fn()), ref))
        print(f"  {name:<32} max relative difference {err:.1e}")


def _flat(outputs) -> list[torch.Tensor]:
    cate, kernels, feats = outputs
    return [*cate, *kernels, feats]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("--input-size", nargs=2, type=int, default=(448, 768), metavar=("H", "W"))
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile-timeout", type=int, default=300, help="seconds; 0 skips torch.compile")
    parser.add_argument("--no-e2e", dest="e2e", action="store_false", help="network variants only")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base = build_model(load_config(args.config)).eval()
    h, w = args.input_size
    base.transform.test_scale = (max(h, w), min(h, w))
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8)
    x = base.transform([image])[0].tensors
    fused = fuse_conv_bn(base)
    cl = to_channels_last(copy.deepcopy(base))
    fused_cl = to_channels_last(fuse_conv_bn(base))
    fused_wino = use_winograd(fuse_conv_bn(base))
    optimized = optimize_for_inference(base)  # fuse + channels_last + winograd
    print(f"torch {torch.__version__}, {args.threads} threads, network input {tuple(x.shape)}, "
          f"iters {args.iters} (+{args.warmup} warm-up), 1-min load before: {os.getloadavg()[0]:.2f}")

    im = torch.inference_mode
    fns = {
        "no_grad": in_mode(torch.no_grad, lambda: base.forward_features(x)),
        "inference_mode": in_mode(im, lambda: base.forward_features(x)),
        "inference_mode+fuse": in_mode(im, lambda: fused.forward_features(x)),
        "inference_mode+channels_last": in_mode(im, lambda: cl.forward_features(x)),
        "inference_mode+fuse+cl": in_mode(im, lambda: fused_cl.forward_features(x)),
        "inference_mode+fuse+winograd": in_mode(im, lambda: fused_wino.forward_features(x)),
        "inference_mode+fuse+cl+wino": in_mode(im, lambda: optimized.forward_features(x)),
        "bf16 fuse+cl+wino": in_mode(bf16_inference, lambda: optimized.forward_features(x)),
    }
    print_differences(fns, base, x)
    notes = []
    if args.compile_timeout > 0:
        compiled, seconds, reason = try_compile(fused, x, args.compile_timeout)
        if compiled is None:
            notes.append(f"torch.compile skipped ({reason})")
        else:
            notes.append(f"torch.compile: first call (compilation) took {seconds:.0f} s")
            fns["inference_mode+fuse+compile"] = in_mode(im, lambda: compiled(x))
    else:
        notes.append("torch.compile skipped (--compile-timeout 0)")
    if args.e2e:
        fns["e2e no_grad (model as built)"] = in_mode(contextlib.nullcontext, lambda: base([image]))
        fns["e2e inference_mode+optimize"] = in_mode(im, lambda: optimized([image]))
        fns["e2e bf16+optimize"] = in_mode(bf16_inference, lambda: optimized([image]))

    times = time_interleaved(fns, args.iters, args.warmup)
    stats = {name: summarize(t) for name, t in times.items()}
    print(f"\n{'variant':<32}{'median ms':>11}{'p90 ms':>10}{'speedup':>10}   (network rows vs no_grad, "
          f"e2e rows vs e2e no_grad)")
    for name, s in stats.items():
        ref = stats["e2e no_grad (model as built)" if name.startswith("e2e") else "no_grad"]["median_ms"]
        print(f"{name:<32}{s['median_ms']:>11.1f}{s['p90_ms']:>10.1f}{ref / s['median_ms']:>9.2f}x")
    for note in notes:
        print(note)
    print(f"1-min load after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

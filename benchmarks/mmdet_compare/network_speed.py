"""The seed network (SOLOv2 light R50-FPN, 8 classes) of MMDetection 3.3 and ours, same weights, side by side on one
device: latency and throughput of the network at several batch sizes and precisions.

    /tmp/mmdet-venv/bin/python benchmarks/mmdet_compare/network_speed.py --device cuda --batch 1 8 --precision fp32 fp16
    /tmp/mmdet-venv/bin/python benchmarks/mmdet_compare/network_speed.py --device cpu --batch 1 --iters 5 --warmup 1

The network is what both run for every image: MMDetection's ``model._forward`` (backbone, FPN, ``SOLOV2Head``
forward) and our ``forward_features`` (the same layers), on one padded, normalized batch of 448x768 (the
Cityscapes config's test scale) that both get as it is: no data pipeline, no post-processing
(``run_mmdet.py`` times those, end to end, on the CPU). Ours runs as built and as ``solov2.Predictor`` runs it
(``optimize_for_inference``: BatchNorm folded, channels_last; on CUDA that is all it changes). Lower precisions
are ``torch.autocast`` on both sides. Timed interleaved (``solov2.apps.benchmark.time_interleaved``, with
``torch.cuda.synchronize`` around each call on CUDA). Before timing it prints the largest difference between
the two networks' fp32 outputs, as a check that they are the same network with the same weights.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from run_mmdet import CONFIG, REPO, build_mmdet, build_ours, check_same_network, copy_our_weights  # noqa: E402

sys.path.insert(0, REPO)
DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def build_models(device: torch.device) -> dict:
    """name -> model: MMDetection's, ours as built and ours optimized, all with our random weights (seed 0)."""
    from solov2.inference.optimize import optimize_for_inference
    ours = build_ours(CONFIG)
    mm = build_mmdet(ours.num_classes)
    copy_our_weights(ours, mm)
    fast = optimize_for_inference(ours, winograd=device.type == "cpu")  # Winograd is a CPU kernel (NNPACK)
    return {name: m.to(device).eval() for name, m in (("mmdet", mm), ("ours", ours), ("ours_optimized", fast))}


def network(name: str, model):
    """The callable that runs ``model``'s network on a padded batch."""
    return model._forward if name == "mmdet" else model.forward_features


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--precision", nargs="+", choices=list(DTYPES), default=["fp32", "fp16"])
    parser.add_argument("--size", type=int, nargs=2, default=[448, 768], metavar=("H", "W"))
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    args = parser.parse_args(argv)
    import mmdet

    from solov2.apps.benchmark import summarize, time_interleaved
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    models = build_models(device)
    name = torch.cuda.get_device_name(device) if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"seed network, {args.size[0]}x{args.size[1]}, {name}; torch {torch.__version__}, mmdet {mmdet.__version__}")
    torch.manual_seed(0)
    with torch.no_grad():
        diff = check_same_network(models["ours"], models["mmdet"], torch.randn(1, 3, *args.size, device=device))
    print(f"same network: largest |ours - mmdet| over the fp32 outputs {diff:.2e}")
    sync = torch.cuda.synchronize if cuda else None
    for batch in args.batch:
        x = torch.randn(batch, 3, *args.size, device=device)
        for precision in args.precision:
            dtype = DTYPES[precision]

            def run(net, dtype=dtype, x=x):
                def call():
                    with torch.no_grad(), torch.autocast(device.type, dtype=dtype or torch.float32,
                                                         enabled=dtype is not None):
                        net(x)
                return call
            times = time_interleaved({k: run(network(k, m)) for k, m in models.items()}, args.iters, args.warmup,
                                     sync)
            base = summarize(times["mmdet"], batch)
            for key, t in times.items():
                s = summarize(t, batch)
                print(f"  batch {batch} {precision:<5}{key:<16}{s['median_ms']:9.1f} ms median "
                      f"{s['images_per_s']:8.1f} images/s   ours/mmdet {s['median_ms'] / base['median_ms']:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

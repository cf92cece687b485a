"""torch.compile (Inductor's C++ backend) on the CPU against our eager paths, one process, 2 threads, fp32.

    python benchmarks/torch_compile_cpu.py infer   # the seed network's backbone + FPN at 448x768, inference
    python benchmarks/torch_compile_cpu.py train   # the demo's fp32 CPU training step (batch 8 of 128x128)

``infer`` times ``neck(backbone(x))`` of the light R50 (random weights) as built, as the Predictor runs it
(:func:`~solov2.inference.optimize.optimize_for_inference`: BatchNorm folded, channels_last and this machine's
Winograd choices of ``solov2 tune``, cached; run ``solov2 tune --threads 2`` first), and compiled with Inductor's
``freezing`` (weights as constants, prepacked) from both; it prints the median of 6 runs, the first call's time
(the compilation) and the largest difference from eager. ``train`` times the training step of the demo's fp32
recipe (:data:`solov2.apps.demo.FP32_CPU_RECIPE`) eager and with the backbone + FPN, then the whole network
(backbone, FPN, mask feature head, SOLOv2 head) compiled; target assignment and the losses stay eager.
"""
from __future__ import annotations

import argparse
import time

import torch

from solov2 import build_model, load_config

SEED = "solov2_light_448_r50_fpn_2gpu_3x"
DEMO = "solov2_light_r18_shapes"


def median_seconds(fn, runs: int) -> float:
    from solov2.apps.benchmark import summarize, time_interleaved
    return summarize(time_interleaved({"fn": fn}, runs, warmup=0)["fn"])["median_ms"] / 1e3


def infer() -> None:
    from solov2.inference.optimize import optimize_for_inference
    torch.manual_seed(0)
    built = build_model(load_config(SEED, {"model.pretrained": None})).eval()
    x = torch.randn(1, 3, 448, 768)
    with torch.no_grad():
        for name, model, image in (("as built", built, x),
                                   ("optimized", optimize_for_inference(built),
                                    x.contiguous(memory_format=torch.channels_last))):
            reference = model.neck(model.backbone(image))
            eager = median_seconds(lambda: model.neck(model.backbone(image)), 6)
            backbone = torch.compile(model.backbone, options={"freezing": True})
            neck = torch.compile(model.neck, options={"freezing": True})
            start = time.perf_counter()
            out = neck(backbone(image))
            first = time.perf_counter() - start
            diff = max(float((a - b).abs().max()) for a, b in zip(out, reference))
            compiled = median_seconds(lambda: neck(backbone(image)), 6)
            print(f"backbone+FPN {name}: eager {eager * 1e3:.0f} ms, compiled {compiled * 1e3:.0f} ms "
                  f"(eager / compiled {eager / compiled:.2f}; first call {first:.0f} s; max |diff| {diff:.1e})",
                  flush=True)
            torch._dynamo.reset()


def train() -> None:
    from solov2.apps.demo import FP32_CPU_RECIPE
    from solov2.data import SyntheticShapes
    cfg = load_config(DEMO, dict(FP32_CPU_RECIPE))
    data = SyntheticShapes(num_images=64, seed=0, image_size=128)
    batches = [([data[i][0] for i in range(k, k + 8)],
                [{"masks": data[i][1]["masks"], "labels": data[i][1]["labels"]} for i in range(k, k + 8)])
               for k in range(0, 64, 8)]
    for parts in ((), ("backbone", "neck"), ("backbone", "neck", "mask_feat_head", "bbox_head")):
        torch.manual_seed(0)
        model = build_model(cfg).train().to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.004, momentum=0.9)
        for part in parts:
            setattr(model, part, torch.compile(getattr(model, part)))

        def step(batch):
            loss = sum(model(*batch).values())
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()

        start = time.perf_counter()
        for batch in batches[:3]:  # compilation, and the first steps of each graph
            step(batch)
        warmup = time.perf_counter() - start
        steps = iter(batches[3:] * 2)
        seconds = median_seconds(lambda: step(next(steps)), 10)
        print(f"training step, compiled: {'+'.join(parts) or 'nothing (eager)'}: {seconds * 1e3:.0f} ms "
              f"(first 3 steps {warmup:.0f} s)", flush=True)
        torch._dynamo.reset()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["infer", "train"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    infer() if args.what == "infer" else train()


if __name__ == "__main__":
    main()

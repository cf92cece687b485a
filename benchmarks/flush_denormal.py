"""Time a demo training step with and without flushing denormal floats to zero (issue 11).

    python benchmarks/flush_denormal.py runs/demo/latest.pth --data runs/demo/data/train

Late in training, gradients and AdamW's moments hold numbers below float32's normal range, which x86 CPUs
handle in a slow path; ``torch.set_flush_denormal(True)`` (what ``solov2 train`` sets on CPU) treats them as 0.
Compares a freshly initialised model with the trained checkpoint (its weights and optimizer state), each step on
real batches of the demo data under bf16 autocast, interleaved; prints the median per case.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)

from demo_step import train_step  # noqa: E402  (benchmarks/, this script's folder)

from solov2 import build_model, load_config  # noqa: E402
from solov2.apps.benchmark import time_interleaved  # noqa: E402
from solov2.data import build_dataset, collate  # noqa: E402

CONFIG = os.path.join(ROOT, "configs/demo/solov2_light_r18_shapes.py")


def build_step(cfg, batches, checkpoint: dict | None):
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["state_dict"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        for group in optimizer.param_groups:
            group["lr"] = 1e-5  # keep the trained state where it is
    return train_step(model, optimizer, batches)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="a demo checkpoint saved by solov2 train (weights and optimizer state)")
    p.add_argument("--data", default="runs/demo/data/train", help="the demo's train folder (COCO)")
    p.add_argument("--iters", type=int, default=12)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    checkpoint = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    cfg = load_config(CONFIG)
    cfg.model.bbox_head.num_classes = len(checkpoint["meta"]["classes"])
    dataset = build_dataset({"type": "CocoDataset", "ann_file": f"{args.data}/annotations.json",
                             "img_prefix": f"{args.data}/images"})
    batches = [collate([dataset[i] for i in range(b * 8, b * 8 + 8)]) for b in range(6)]
    steps = {"fresh": build_step(cfg, batches, None), "trained": build_step(cfg, batches, checkpoint)}
    for flush in (False, True):
        torch.set_flush_denormal(flush)
        times = time_interleaved(steps, iters=args.iters, warmup=2)
        for name, t in times.items():
            print(f"flush_denormal={flush!s:5} {name:8s} median {statistics.median(t) * 1000:6.1f} ms")


if __name__ == "__main__":
    main()

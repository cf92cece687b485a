"""What the small-data switches cost per training step on a CPU: loading a training item plain, with large-scale
jitter, and with copy-paste (probability 1) + jitter (``solov2.data.augment``), and one weight-EMA update of the
demo model (``solov2.engine.ema``). One thread; the best of ``--passes`` passes over the items.

    .venv/bin/solov2 make-shapes /tmp/shapes60 --num-images 60 --image-size 128
    .venv/bin/python benchmarks/augment_cost.py /tmp/shapes60
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from solov2.config import find_config, load_config
from solov2.data import build_dataset
from solov2.engine.ema import ModelEMA
from solov2.engine.rng import SeededSamples
from solov2.models import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="a COCO folder written by `solov2 make-shapes` (annotations.json, images/)")
    parser.add_argument("--size", type=int, default=128, help="large-scale jitter's output side")
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = dict(type="CocoDataset", ann_file=os.path.join(args.data, "annotations.json"),
                img_prefix=os.path.join(args.data, "images"), flip_prob=0.5)
    lsj = dict(size=(args.size, args.size), scale=(0.1, 2.0))
    for name, augment in (("plain", None), ("large-scale jitter", dict(lsj=lsj)),
                          ("copy-paste (p=1) + jitter", dict(copy_paste=1.0, lsj=lsj))):
        data = SeededSamples(build_dataset({**base, **({"augment": augment} if augment else {})}))
        best = float("inf")
        for rep in range(args.passes):
            start = time.perf_counter()
            for i in range(len(data)):
                data[(i, 1000 * rep + i)]
            best = min(best, (time.perf_counter() - start) / len(data))
        print(f"{name}: {best * 1000:.1f} ms per item")
    model = build_model(load_config(find_config("solov2_light_r18_shapes")))
    ema = ModelEMA(model, decay=0.9998, warmup=2000)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(10):
            ema.update(model)
        best = min(best, (time.perf_counter() - start) / 10)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"EMA update: {best * 1000:.1f} ms per step ({params:.1f} M parameters)")


if __name__ == "__main__":
    main()

"""Time one training step of the demo network in head variants, interleaved in one process (issue 11).

    python benchmarks/demo_step.py --variants old_head grids12 demo --iters 10
    python benchmarks/demo_step.py --variants demo demo+unfused demo+channels_last --iters 10

A step: ``model(images, targets)`` on 8 built-in shapes images of 128 px (the demo's data, made in a temporary
folder) under bf16 autocast (``--no-amp`` for fp32), backward, gradient clipping (max norm 35) and AdamW, as
``solov2 train`` runs the demo. ``+unfused`` uses AdamW's per-tensor loop instead of the fused kernel the trainer
picks, ``+channels_last`` converts the model to NHWC. Prints the median and minimum per variant.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)

from solov2 import build_model, load_config  # noqa: E402
from solov2.apps.benchmark import time_interleaved  # noqa: E402
from solov2.data import build_dataset, collate  # noqa: E402
from solov2.data.synthetic import write_shapes_coco  # noqa: E402
from solov2.precision import precision_autocast  # noqa: E402

CONFIG = os.path.join(ROOT, "configs/demo/solov2_light_r18_shapes.py")
OLD_HEAD = ["model.bbox_head.num_grids=[24, 20, 16, 12, 8]", "model.bbox_head.seg_feat_channels=128",
            "model.bbox_head.sigma=0.2"]
HEADS = {
    "demo": [],  # the config as it is
    "old_head": OLD_HEAD,  # the demo's head before this change
    "grids12": OLD_HEAD + ["model.bbox_head.num_grids=[12, 10, 8, 6, 4]"],
}


def build_step(name: str, images, targets, amp: bool):
    head, *flags = name.split("+")
    cfg = load_config(CONFIG, ["model.transform.train_scales=[(128, 128)]", *HEADS[head]])
    cfg.model.bbox_head.num_classes = 5
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    if "channels_last" in flags:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused="unfused" not in flags)
    return train_step(model, optimizer, [(images, targets)], amp)


def train_step(model, optimizer, batches: list, amp: bool = True):
    """A function running one training step as ``solov2 train`` does (forward under bf16 autocast unless ``amp``
    is False, backward, clipping at max norm 35, the optimizer), each call on the next of ``batches`` (cycled)."""
    calls = [0]

    def step():
        images, targets = batches[calls[0] % len(batches)]
        calls[0] += 1
        with precision_autocast(torch.bfloat16 if amp else None, "cpu"):
            losses = model(images, targets)
        sum(losses.values()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 35)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", nargs="+", default=["old_head", "grids12", "demo"],
                   help=f"a head ({', '.join(HEADS)}), optionally +unfused / +channels_last")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True, help="bf16 autocast")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        write_shapes_coco(tmp, num_images=8, seed=0, image_size=128)
        dataset = build_dataset({"type": "CocoDataset", "ann_file": f"{tmp}/annotations.json",
                                 "img_prefix": f"{tmp}/images"})
        images, targets = collate([dataset[i] for i in range(8)])
    steps = {name: build_step(name, images, targets, args.amp) for name in args.variants}
    times = time_interleaved(steps, iters=args.iters, warmup=args.warmup)
    for name, t in times.items():
        print(f"{name:28s} median {statistics.median(t) * 1000:7.1f} ms   min {min(t) * 1000:7.1f} ms")


if __name__ == "__main__":
    main()

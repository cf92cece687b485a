"""One training step of MMDetection 3.3's SOLOv2 beside ours: same network, same weights, same batch, one run.

    /tmp/mmdet-venv/bin/python benchmarks/mmdet_compare/train_step.py --model demo --threads 2 --iters 10
    /tmp/mmdet-venv/bin/python benchmarks/mmdet_compare/train_step.py --model seed --batch 2 --iters 3

A step is what each trainer does per iteration: MMDetection's ``data_preprocessor`` (normalize, pad) +
``model.loss`` + backward + gradient clipping (max norm 35, as both configs) + SGD (momentum 0.9, weight
decay 1e-4, torch's defaults, as its ``OptimWrapper`` builds it); ours ``model(images, targets)`` (our transform
resizes/normalizes/pads inside the model) + backward + the same clipping + the same SGD as ``solov2 train`` builds
it (``build_optimizer``: fused on CPU). The decoded images and masks are the same tensors on both sides, made
before timing (MMDetection's pipeline runs in data-loader workers, ours in the dataset: neither is timed).

Models (``--model``): ``demo`` = the README demo's network (ResNet-18 light, 64-channel FPN, 5 classes) on
8 built-in shapes images of 128 x 128 with every layer and BatchNorm training, as the demo trains;
``seed`` = the seed README's light R50 (8 classes) on 448 x 768 shapes images, stem and layer1 frozen and
BatchNorm in eval mode as the official config trains from ImageNet weights.

Our variants (``--ours``), timed interleaved with MMDetection's (``solov2.apps.benchmark.time_interleaved``):
``fp32`` (float32, as ``solov2 train --no-amp``), ``fp32_cl`` (float32 with the weights, and so every
activation, in channels_last memory format), ``bf16`` (bf16 autocast, as ``--amp``; the default on CPUs with
native bf16, see ``solov2.precision.default_amp``; emulated, so slow, on other CPUs). MMDetection has no CPU mixed
precision (its ``AmpOptimWrapper`` needs CUDA), so its figure is float32.
"""
from __future__ import annotations

import argparse
import copy
import logging
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, REPO)

MODELS = {
    "demo": dict(config="configs/demo/solov2_light_r18_shapes.py", size=(128, 128), batch=8, train_bn=True),
    "seed": dict(config="configs/solov2/cityscapes/solov2_light_448_r50_fpn_2gpu_3x.py", size=(448, 768), batch=2,
                 train_bn=False),
}


def mmdet_cfg_from_ours(cfg, train_bn: bool) -> dict:
    """MMDetection 3.x's model config for the network our config builds (same layer names after conversion)."""
    from run_mmdet import mmdet_model_cfg
    m = cfg.model
    bb, neck, mf, head = m.backbone, m.neck, m.mask_feat_head, m.bbox_head
    out = mmdet_model_cfg(head.num_classes)
    out["backbone"].update(depth=bb.depth, frozen_stages=-1 if train_bn else bb.get("frozen_stages", 1),
                           norm_eval=not train_bn)
    out["neck"].update(in_channels=list(neck.in_channels), out_channels=neck.out_channels)
    mh = out["mask_head"]
    mh.update(in_channels=head.in_channels, feat_channels=head.seg_feat_channels,
              stacked_convs=head.get("stacked_convs", 2), num_grids=list(head.num_grids),
              scale_ranges=tuple(tuple(r) for r in head.scale_ranges), strides=list(head.get("strides", mh["strides"])))
    mh["mask_feature_head"].update(in_channels=mf.in_channels, feat_channels=mf.out_channels,
                                   out_channels=head.ins_out_channels)
    mh["train_cfg"] = None
    return out


def build_pair(name: str):
    from mmdet.registry import MODELS as MM
    from mmdet.utils import register_all_modules
    from mmengine.config import ConfigDict
    from mmengine.logging import MMLogger
    from run_mmdet import copy_our_weights

    from solov2 import build_model, load_config
    spec = MODELS[name]
    h, w = spec["size"]
    opts = [f"model.transform.train_scales=[({max(h, w)}, {min(h, w)})]"]
    if spec["train_bn"]:
        opts += ["model.backbone.frozen_stages=-1", "model.backbone.norm_eval=False"]
    cfg = load_config(os.path.join(REPO, spec["config"]), opts)
    torch.manual_seed(0)
    ours = build_model(cfg.model).train()
    register_all_modules()
    mcfg = mmdet_cfg_from_ours(cfg, spec["train_bn"])
    mcfg["mask_head"].pop("train_cfg")
    mm = MM.build(ConfigDict(mcfg))
    MMLogger.get_current_instance().setLevel(logging.WARNING)  # init_weights logs every parameter
    mm.init_weights()
    copy_our_weights(ours, mm)
    return ours.train(), mm.train(), cfg


def make_batch(cfg, size: tuple[int, int], batch: int):
    """``batch`` built-in shapes images: ours (uint8 (3, H, W) + targets) and MMDetection's packed inputs."""
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData

    from solov2.data.synthetic import SyntheticShapes
    num_classes = cfg.model.bbox_head.num_classes
    data = SyntheticShapes(batch, seed=0, image_size=size)
    images, targets, inputs, samples = [], [], [], []
    for i in range(batch):
        img, t = data[i]
        labels = t["labels"] % num_classes
        images.append(img)
        targets.append({"masks": t["masks"], "labels": labels})
        masks = t["masks"].numpy().astype(np.uint8)
        boxes = torch.tensor([_box(m) for m in masks], dtype=torch.float32).reshape(-1, 4)
        sample = DetDataSample(metainfo=dict(img_shape=size, ori_shape=size, pad_shape=size, scale_factor=(1.0, 1.0),
                                             batch_input_shape=size))
        sample.gt_instances = InstanceData(bboxes=boxes, labels=labels, masks=BitmapMasks(masks, *size))
        inputs.append(img.flip(0).contiguous())  # MMDetection reads BGR; its preprocessor turns it to RGB
        samples.append(sample)
    return images, targets, dict(inputs=inputs, data_samples=samples)


def _mm_loss(model, data: dict) -> dict:
    batch = model.data_preprocessor(data, True)
    return model.loss(batch["inputs"], batch["data_samples"])


def _box(mask: np.ndarray) -> list[int]:
    ys, xs = np.where(mask.any(axis=1))[0], np.where(mask.any(axis=0))[0]
    return [xs[0], ys[0], xs[-1] + 1, ys[-1] + 1]


def sgd(model, ours: bool):
    """Each trainer's SGD (momentum 0.9, weight decay 1e-4): ours is built as ``solov2 train`` builds it
    (``build_optimizer``: fused where the device has a fused kernel), MMDetection's as its ``OptimWrapper``
    does (``torch.optim.SGD`` with torch's defaults)."""
    settings = dict(lr=1e-4, momentum=0.9, weight_decay=1e-4)
    if ours:
        from solov2.engine.trainer import build_optimizer
        return build_optimizer(model, dict(type="SGD", **settings))
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], **settings)


def step_fn(model, optimizer, loss_fn, dtype=None):
    def run():
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            losses = loss_fn()
        loss = sum(v for k, v in losses.items() if "loss" in k)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], max_norm=35)
        optimizer.step()
    return run


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=list(MODELS), default="demo")
    p.add_argument("--batch", type=int, help="images per step (default: demo 8, seed 2)")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ours", nargs="+", choices=("fp32", "fp32_cl", "bf16"), default=["fp32", "fp32_cl", "bf16"],
                   help="our variants to time beside MMDetection's fp32 step")
    args = p.parse_args(argv)
    import mmdet

    from solov2.apps.benchmark import summarize, time_interleaved
    spec = MODELS[args.model]
    batch = args.batch or spec["batch"]
    ours, mm, cfg = build_pair(args.model)
    images, targets, mm_data = make_batch(cfg, spec["size"], batch)
    torch.set_num_threads(args.threads)

    def mm_loss(model):
        return lambda: _mm_loss(model, mm_data)

    # The first step from the same weights: both compute the same loss (a check that they are the same task).
    with torch.no_grad():
        mine = ours(images, targets)
        theirs = _mm_loss(mm, mm_data)
    print(f"same weights, same batch: ours loss_ins {mine['loss_ins']:.4f} loss_cate {mine['loss_cate']:.4f} | "
          f"mmdet loss_mask {theirs['loss_mask']:.4f} loss_cls {theirs['loss_cls']:.4f}")
    models = {"mmdet_fp32": mm}
    for variant in args.ours:
        model = copy.deepcopy(ours)
        models[f"ours_{variant}"] = model.to(memory_format=torch.channels_last) if variant == "fp32_cl" else model
    fns = {}
    for name, model in models.items():
        loss = mm_loss(model) if name.startswith("mmdet") else (lambda m=model: m(images, targets))
        dtype = torch.bfloat16 if name.endswith("bf16") else None
        fns[name] = step_fn(model, sgd(model, ours=not name.startswith("mmdet")), loss, dtype)
    load = os.getloadavg()[0]
    times = time_interleaved(fns, args.iters, args.warmup)
    h, w = spec["size"]
    print(f"\n{args.model} network, {batch} images of {h}x{w} per step, {args.threads} threads, mmdet "
          f"{mmdet.__version__}, torch {torch.__version__}, {args.iters} steps (+{args.warmup} warm-up) each, "
          f"interleaved; 1-min load before {load:.2f}, after {os.getloadavg()[0]:.2f}")
    base = summarize(times["mmdet_fp32"])["median_ms"]
    for name, t in times.items():
        s = summarize(t)
        print(f"  {name:<12}{s['median_ms']:>9.0f} ms median {s['p90_ms']:>9.0f} ms p90   this/mmdet "
              f"{s['median_ms'] / base:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

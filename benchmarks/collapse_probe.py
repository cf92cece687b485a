"""Probe the mask-branch collapse (issue 11): train a config at a small batch and print, per iteration, the
mask logits of the positive pairs (foreground / background means, max), the dynamic kernels' norm and mean,
the mask features' norm and the gradient norm of each branch. docs/training.md quotes its output.

    python benchmarks/collapse_probe.py --config configs/solov2/cityscapes/solov2_light_448_r50_fpn_2gpu_3x.py \
        --data runs/demo/data/train --opt SGD --lr 0.00125 --warmup 0 --iters 10 --every 1 \
        --opts model.pretrained=None model.bbox_head.num_classes=5 "model.transform.train_scales=[(384,384)]"

The model is built as the config says (no ImageNet weights are loaded and nothing is unfrozen, unlike
``solov2 train``): add ``model.backbone.norm_eval=False model.backbone.frozen_stages=-1`` to train BatchNorm as
training from scratch now does, ``model.backbone.zero_init_residual=False`` for the older initialisation.
``--floor F`` trains the Dice loss with a sigmoid whose gradient is at least F (an alternative
that was measured and not adopted).
"""
import argparse
import random

import numpy as np
import torch
from torch import nn

from solov2 import build_model, load_config
from solov2.data import build_dataset, collate
from solov2.losses import solov2_losses
from solov2.models.solov2 import _pad_masks
from solov2.ops import dynamic_masks
from solov2.targets import build_targets

p = argparse.ArgumentParser()
p.add_argument("--config", default="configs/demo/solov2_light_r18_shapes.py")
p.add_argument("--data", default="runs/demo/data/train", help="a COCO folder (annotations.json + images/)")
p.add_argument("--bs", type=int, default=2)
p.add_argument("--iters", type=int, default=120)
p.add_argument("--opt", default="AdamW")
p.add_argument("--lr", type=float, default=0.002)
p.add_argument("--seed", type=int, default=3)
p.add_argument("--opts", nargs="*", default=[])
p.add_argument("--warmup", type=int, default=50)
p.add_argument("--floor", type=float, default=0)
p.add_argument("--every", type=int, default=5)
a = p.parse_args()
torch.manual_seed(a.seed)
random.seed(a.seed)
np.random.seed(a.seed)
opts = {"data.train": dict(type="CocoDataset", ann_file=f"{a.data}/annotations.json", img_prefix=f"{a.data}/images",
                           flip_prob=0.5)}
for o in a.opts:
    k, v = o.split("=", 1)
    opts[k] = eval(v)
cfg = load_config(a.config, opts)
model = build_model(cfg).train()
if a.floor:
    class S(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            p = x.sigmoid()
            ctx.save_for_backward(p)
            return p
        @staticmethod
        def backward(ctx, g):
            p, = ctx.saved_tensors
            return g * (p * (1 - p)).clamp(min=a.floor)

ds = build_dataset(cfg.data.train)
params = [q for q in model.parameters() if q.requires_grad]
opt = (torch.optim.AdamW(params, lr=a.lr, weight_decay=1e-4) if a.opt == "AdamW"
       else torch.optim.SGD(params, lr=a.lr, momentum=0.9, weight_decay=1e-4))
groups = {"backbone": model.backbone, "neck": model.neck, "mask_feat": model.mask_feat_head,
          "kernel_br": nn.ModuleList([model.bbox_head.kernel_convs, model.bbox_head.solo_kernel]),
          "cate_br": nn.ModuleList([model.bbox_head.cate_convs, model.bbox_head.solo_cate])}
g = torch.Generator().manual_seed(a.seed)
it = 0
while it < a.iters:
    order = torch.randperm(len(ds), generator=g).tolist()
    for s in range(0, len(order) - a.bs + 1, a.bs):
        images, targets = collate([ds[i] for i in order[s:s + a.bs]])
        lr = a.lr * (0.1 + 0.9 * min(1, it / a.warmup)) if a.warmup else a.lr
        for gr in opt.param_groups:
            gr["lr"] = lr
        il, tg = model.transform(images, [{"masks": t["masks"], "labels": t["labels"]} for t in targets], training=True)
        cate, kern, mf = model.forward_features(il.tensors)
        H, W = il.tensors.shape[-2:]
        head = model.bbox_head
        T = build_targets([_pad_masks(t["masks"], (H, W)) for t in tg], [t["labels"] for t in tg], (H, W),
                          head.num_grids, head.scale_ranges, head.sigma, head.num_classes)
        ks = head.flatten_kernels(kern)[T.pos_image, T.pos_cell]
        mp = torch.cat([dynamic_masks(mf[b], ks[T.pos_image == b], head.kernel_size) for b in range(len(tg))])
        losses = solov2_losses(cate, mp, T, head.num_classes, head.loss_cate, head.loss_ins_weight)
        if a.floor:
            from solov2.losses import dice_loss
            losses["loss_ins"] = 3.0 * dice_loss(S.apply(mp.float()), T.mask_targets).mean()
        loss = sum(losses.values())
        opt.zero_grad()
        loss.backward()
        gn = {k: float(torch.norm(torch.stack([q.grad.norm() for q in m.parameters() if q.grad is not None])))
              for k, m in groups.items()}
        tot = nn.utils.clip_grad_norm_(params, 35)
        opt.step()
        it += 1
        if it % a.every == 0 or it <= 5:
            with torch.no_grad():
                t = T.mask_targets.bool()
                fg = mp[t] if t.any() else mp.new_zeros(1)
                bg = mp[~t]
                print(f"it {it:4d} lr {lr:.4f} ins {float(losses['loss_ins']):.4f} "
                      f"cate {float(losses['loss_cate']):.4f} "
                      f"P {mp.shape[0]:3d} logit fg {float(fg.mean()):7.2f} bg {float(bg.mean()):7.2f} "
                      f"max {float(mp.max()):7.2f} "
                      f"|k| {float(ks.norm(dim=1).mean()):6.2f} kmean {float(ks.mean()):+.3f} "
                      f"mf mean {float(mf.mean()):.3f} mf|| {float(mf.norm(dim=1).mean()):.2f} "
                      + " ".join(f"g_{k} {v:.2e}" for k, v in gn.items()) + f" gtot {float(tot):.1f}", flush=True)
        if it >= a.iters:
            break

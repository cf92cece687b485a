"""The SOLOv2 head: per-grid-cell categories and dynamic mask kernels (Sec. 3.2 of the paper)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..losses import FocalLoss
from .layers import ModuleList, ConvModule
from .coord import append_coords


class SOLOv2Head(nn.Module):
    """Category branch and kernel branch over S x S grids, one grid per FPN level.

    Each level's feature (P2 halved, P3, P4, P5, P6 resized to P5) gets CoordConv channels, is resized
    to S x S, and goes through ``stacked_convs`` conv-GN-ReLU blocks per branch; ``solo_cate`` gives C
    class logits per cell and ``solo_kernel`` a dynamic conv kernel of ``E * k * k`` weights per cell.

    Args:
        num_classes: C, object classes without background (8 for Cityscapes, 80 for COCO).
        in_channels: FPN channels (256).
        seg_feat_channels: hidden channels (256 light, 512 full).
        stacked_convs: conv blocks per branch (2 light, 4 full).
        strides: per-level strides, used at inference to drop masks smaller than the stride.
        num_grids: S per level.
        ins_out_channels: E, the mask feature channels the kernels apply to (128 light, 256 full).
        kernel_size: the dynamic kernel's spatial size k (1).
    """

    def __init__(self, num_classes: int, in_channels: int = 256, seg_feat_channels: int = 256,
                 stacked_convs: int = 2, strides=(8, 8, 16, 32, 32), num_grids=(40, 36, 24, 16, 12),
                 scale_ranges=((1, 96), (48, 192), (96, 384), (192, 768), (384, 2048)), sigma: float = 0.2,
                 ins_out_channels: int = 128, kernel_size: int = 1, loss_cate: dict | None = None,
                 loss_ins_weight: float = 3.0):
        super().__init__()
        if not (len(strides) == len(num_grids) == len(scale_ranges)):
            raise ValueError("SOLOv2Head: strides, num_grids and scale_ranges must have one entry per level")
        self.num_classes = num_classes
        self.strides, self.num_grids = list(strides), list(num_grids)
        self.scale_ranges = [tuple(r) for r in scale_ranges]
        self.sigma, self.ins_out_channels, self.kernel_size = sigma, ins_out_channels, kernel_size
        self.loss_ins_weight = loss_ins_weight
        self.loss_cate = FocalLoss(**(loss_cate or {}))
        self.cate_convs = ModuleList(
            ConvModule(in_channels if i == 0 else seg_feat_channels, seg_feat_channels, 3, padding=1, norm="GN",
                       activation="relu") for i in range(stacked_convs))
        self.kernel_convs = ModuleList(
            ConvModule(in_channels + 2 if i == 0 else seg_feat_channels, seg_feat_channels, 3, padding=1,
                       norm="GN", activation="relu") for i in range(stacked_convs))
        self.solo_cate = nn.Conv2d(seg_feat_channels, num_classes, 3, padding=1)
        self.solo_kernel = nn.Conv2d(seg_feat_channels, ins_out_channels * kernel_size ** 2, 3, padding=1)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        # Focal-loss prior: every cell starts out predicting foreground with probability 0.01.
        nn.init.constant_(self.solo_cate.bias, -math.log((1 - 0.01) / 0.01))

    @staticmethod
    def split_feats(feats: list[Tensor]) -> list[Tensor]:
        """P2 at half resolution (stride 8), P3..P5 as they are, P6 resized to P5 (stride 32)."""
        return [F.interpolate(feats[0], scale_factor=0.5, mode="bilinear", align_corners=False),
                feats[1], feats[2], feats[3],
                F.interpolate(feats[4], size=feats[3].shape[-2:], mode="bilinear", align_corners=False)]

    def forward(self, feats: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """FPN outputs P2..P6 -> per level ``(B, C, S, S)`` category logits and ``(B, E*k*k, S, S)`` kernels."""
        inputs = self.level_inputs(feats)
        return [self.forward_cate(x) for x in inputs], [self.forward_kernel(x) for x in inputs]

    def level_inputs(self, feats: list[Tensor]) -> list[Tensor]:
        """FPN outputs P2..P6 -> per level ``(B, in_channels + 2, S, S)``: the level's features with
        CoordConv coordinates, resized to its grid."""
        return [F.interpolate(append_coords(x), size=num_grid, mode="bilinear", align_corners=False)
                for x, num_grid in zip(self.split_feats(feats), self.num_grids)]

    def forward_cate(self, x: Tensor) -> Tensor:
        """One level's input ``(B, in_channels + 2, S, S)`` -> category logits ``(B, C, S, S)`` (no coordinates)."""
        x = x[:, :-2]
        for conv in self.cate_convs:
            x = conv(x)
        return self.solo_cate(x)

    def forward_kernel(self, x: Tensor) -> Tensor:
        """One level's input ``(B, in_channels + 2, S, S)`` -> dynamic kernels ``(B, E*k*k, S, S)``."""
        for conv in self.kernel_convs:
            x = conv(x)
        return self.solo_kernel(x)

    @staticmethod
    def flatten_kernels(kernel_preds: list[Tensor]) -> Tensor:
        """Per-level ``(B, D, S, S)`` -> ``(B, sum S^2, D)``, cells in level-major, row-major order."""
        return torch.cat([k.flatten(2).transpose(1, 2) for k in kernel_preds], dim=1)

    def cell_strides(self, device: torch.device) -> Tensor:
        """``(sum S^2,)`` the stride of the level each cell belongs to."""
        return torch.cat([torch.full((s * s,), float(st), device=device)
                          for s, st in zip(self.num_grids, self.strides)])


def dynamic_masks(mask_feat: Tensor, kernels: Tensor, kernel_size: int = 1) -> Tensor:
    """Apply N dynamic kernels to one image's mask feature.

    Args:
        mask_feat: ``(E, H, W)``.
        kernels: ``(N, E * k * k)``.
    Returns: ``(N, H, W)`` mask logits.
    """
    e = mask_feat.shape[0]
    if kernel_size == 1:
        return (kernels.to(mask_feat.dtype) @ mask_feat.flatten(1)).view(-1, *mask_feat.shape[1:])
    weight = kernels.view(-1, e, kernel_size, kernel_size).to(mask_feat.dtype)
    return F.conv2d(mask_feat[None], weight, padding=kernel_size // 2)[0]

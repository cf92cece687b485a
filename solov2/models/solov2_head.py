"""The SOLOv2 head: per-grid-cell categories and dynamic mask kernels (Sec. 3.2 of the paper)."""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from solov2.losses import FocalLoss, solov2_losses
from solov2.models.coord import append_coords
from solov2.models.dcn import is_deform_conv
from solov2.models.layers import ConvModule, ModuleList
from solov2.ops.dynamic_masks import dynamic_masks
from solov2.postprocess import cell_scores
from solov2.targets import SHARED_CELLS, build_targets


def cell_strides(num_grids: Sequence[int], strides: Sequence[int], device: torch.device | str | None = None) -> Tensor:
    """``(sum S^2,)`` float32: the stride of the level each grid cell belongs to, cells in level-major, row-major
    order (the order of the head's outputs and of an exported graph's)."""
    return torch.cat([torch.full((s * s,), float(st), device=device) for s, st in zip(num_grids, strides)])

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
        loss_cate: focal loss settings ``dict(alpha=0.25, gamma=2.0, loss_weight=1.0)`` (``type`` optional).
        loss_ins: Dice loss settings, the official form ``dict(type='DiceLoss', loss_weight=3.0)``;
            ``loss_ins_weight=3.0`` (the older key) is read too.
        shared_cells: ``"all_pairs"`` (official) or ``"last_owner"``; see :mod:`solov2.targets`.
        use_dcn_in_tower, type_dcn: the official keys: with ``use_dcn_in_tower=True`` every conv of both
            towers is a deformable conv of ``type_dcn`` (``'DCNv2'`` modulated, ``'DCN'`` v1);
            :class:`SOLOv2LightHead` makes only the last conv of each tower deformable.
    """

    def __init__(self, num_classes: int, in_channels: int = 256, seg_feat_channels: int = 256,
                 stacked_convs: int = 2, strides=(8, 8, 16, 32, 32), num_grids=(40, 36, 24, 16, 12),
                 scale_ranges=((1, 96), (48, 192), (96, 384), (192, 768), (384, 2048)), sigma: float = 0.2,
                 ins_out_channels: int = 128, kernel_size: int = 1, loss_cate: dict | None = None,
                 loss_ins: dict | None = None, loss_ins_weight: float | None = None,
                 shared_cells: str = "all_pairs", use_dcn_in_tower: bool = False, type_dcn: str | None = None):
        super().__init__()
        if use_dcn_in_tower and type_dcn not in ("DCN", "DCNv2"):
            raise ValueError(f"{type(self).__name__}: use_dcn_in_tower=True needs type_dcn='DCN' or 'DCNv2', "
                             f"got {type_dcn!r}")
        self.use_dcn_in_tower, self.type_dcn = bool(use_dcn_in_tower), type_dcn
        # 'auto': fitted to the training data by the Trainer before the model is built (solov2.data.report);
        # a model built from such a config elsewhere predicts (the ranges only assign training targets).
        auto = isinstance(scale_ranges, str) and scale_ranges == "auto"
        if not (len(strides) == len(num_grids) == (len(num_grids) if auto else len(scale_ranges))):
            raise ValueError("SOLOv2Head: strides, num_grids and scale_ranges must have one entry per level")
        self.num_classes = num_classes
        self.strides, self.num_grids = list(strides), list(num_grids)
        self.scale_ranges = "auto" if auto else [tuple(r) for r in scale_ranges]
        self.sigma, self.ins_out_channels, self.kernel_size = sigma, ins_out_channels, kernel_size
        self.loss_ins_weight = _dice_weight(loss_ins, loss_ins_weight)
        self.loss_cate = FocalLoss(**_loss_args(loss_cate, "FocalLoss"))
        if shared_cells not in SHARED_CELLS:
            raise ValueError(f"SOLOv2Head: shared_cells must be one of {SHARED_CELLS}, got {shared_cells!r}")
        self.shared_cells = shared_cells
        self.cate_convs = ModuleList(
            ConvModule(in_channels if i == 0 else seg_feat_channels, seg_feat_channels, 3, padding=1, norm="GN",
                       activation="relu", conv_cfg=self.tower_conv_cfg(i, stacked_convs))
            for i in range(stacked_convs))
        self.kernel_convs = ModuleList(
            ConvModule(in_channels + 2 if i == 0 else seg_feat_channels, seg_feat_channels, 3, padding=1,
                       norm="GN", activation="relu", conv_cfg=self.tower_conv_cfg(i, stacked_convs))
            for i in range(stacked_convs))
        self.solo_cate = nn.Conv2d(seg_feat_channels, num_classes, 3, padding=1)
        self.solo_kernel = nn.Conv2d(seg_feat_channels, ins_out_channels * kernel_size ** 2, 3, padding=1)
        self._init_weights()

    def tower_conv_cfg(self, i: int, stacked_convs: int) -> dict | None:
        """The ``conv_cfg`` of tower conv ``i``: deformable everywhere with ``use_dcn_in_tower`` (official
        ``SOLOv2Head``)."""
        return dict(type=self.type_dcn) if self.use_dcn_in_tower else None

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for m in self.modules():  # as the official normal_init(m.conv): weights N(0, 0.01), offsets stay zero
            if is_deform_conv(m):
                nn.init.normal_(m.weight, std=0.01)
                m.init_offset()
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
    def flatten_scores(cate_preds: list[Tensor]) -> Tensor:
        """Per-level ``(B, C, S, S)`` category logits -> ``(B, sum S^2, C)`` float32 probabilities after
        points-NMS (:func:`solov2.postprocess.cell_scores`), cells in level-major, row-major order."""
        return torch.cat([cell_scores(p) for p in cate_preds], dim=1)

    @staticmethod
    def flatten_kernels(kernel_preds: list[Tensor]) -> Tensor:
        """Per-level ``(B, D, S, S)`` -> ``(B, sum S^2, D)``, cells in level-major, row-major order."""
        return torch.cat([k.flatten(2).transpose(1, 2) for k in kernel_preds], dim=1)

    def cell_strides(self, device: torch.device) -> Tensor:
        """``(sum S^2,)`` the stride of the level each cell belongs to."""
        return cell_strides(self.num_grids, self.strides, device)

    def loss(self, cate_preds: list[Tensor], kernel_preds: list[Tensor], mask_feats: Tensor,
             gt_masks: list[Tensor], gt_labels: list[Tensor]) -> dict[str, Tensor]:
        """Target assignment, dynamic masks of the positive pairs and the two losses.

        Args:
            cate_preds, kernel_preds: the outputs of :meth:`forward`.
            mask_feats: ``(B, E, Hp/4, Wp/4)`` from the mask feature branch.
            gt_masks: per image ``(N, Hp, Wp)`` bool masks at the padded input size; gt_labels: ``(N,)`` int64.
        Returns: ``{"loss_ins": ..., "loss_cate": ...}``, weighted.
        """
        image_size = tuple(gt_masks[0].shape[-2:])
        if self.scale_ranges == "auto":
            raise ValueError("SOLOv2Head: scale_ranges='auto' is fitted to the training set by the trainer "
                             "(solov2 train); give the ranges to train this model otherwise")
        tg = build_targets(gt_masks, gt_labels, image_size, self.num_grids, self.scale_ranges, self.sigma,
                           self.num_classes, self.shared_cells)
        kernels = self.flatten_kernels(kernel_preds)[tg.pos_image, tg.pos_cell]  # (P, E*k*k)
        mask_preds = [dynamic_masks(mask_feats[b], kernels[tg.pos_image == b], self.kernel_size)
                      for b in range(len(gt_masks))]
        mask_preds = torch.cat(mask_preds) if mask_preds else mask_feats.new_zeros((0, *mask_feats.shape[-2:]))
        return solov2_losses(cate_preds, mask_preds, tg, self.num_classes, self.loss_cate, self.loss_ins_weight)


class SOLOv2LightHead(SOLOv2Head):
    """The official ``SOLOv2LightHead``: the same layers as :class:`SOLOv2Head`, but ``use_dcn_in_tower``
    makes only the last conv of each tower deformable (``solov2_light_512_dcn_r50``: 3 convs, the third a DCN)."""

    def tower_conv_cfg(self, i: int, stacked_convs: int) -> dict | None:
        return dict(type=self.type_dcn) if self.use_dcn_in_tower and i == stacked_convs - 1 else None


def _loss_args(cfg: dict | None, expected: str) -> dict:
    """A loss config in the official form (``type``, ``use_sigmoid=True``, ...) -> the remaining arguments."""
    cfg = dict(cfg or {})
    if cfg.pop("type", expected) != expected or not cfg.pop("use_sigmoid", True):
        raise ValueError(f"SOLOv2Head: expected dict(type='{expected}', use_sigmoid=True, ...), got {cfg}")
    return cfg


def _dice_weight(loss_ins: dict | None, loss_ins_weight: float | None) -> float:
    """The Dice loss weight from ``loss_ins=dict(type='DiceLoss', loss_weight=w)`` or ``loss_ins_weight=w``."""
    if loss_ins is not None and loss_ins_weight is not None:
        raise ValueError("SOLOv2Head: give the Dice weight once, as loss_ins=dict(loss_weight=...) or loss_ins_weight")
    if loss_ins is None:
        return 3.0 if loss_ins_weight is None else float(loss_ins_weight)
    args = _loss_args(loss_ins, "DiceLoss")
    if set(args) - {"loss_weight"}:
        raise ValueError(f"SOLOv2Head: loss_ins takes only loss_weight besides type and use_sigmoid, got {loss_ins}")
    return float(args.get("loss_weight", 3.0))

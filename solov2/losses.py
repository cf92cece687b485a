"""SOLOv2 losses: sigmoid focal loss for the category grid, Dice loss for the masks.

Both compute in float32 whatever the autocast dtype, so fp16/AMP training cannot overflow them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:  # targets.py imports nothing from here; the name is only an annotation
    from solov2.targets import SOLOv2Targets


def sigmoid_focal_loss(logits: Tensor, labels: Tensor, num_classes: int, alpha: float = 0.25, gamma: float = 2.0,
                       avg_factor: float | Tensor | None = None) -> Tensor:
    """Focal loss (Lin et al. 2017) summed over cells and classes, divided by ``avg_factor``.

    Args:
        logits: ``(M, C)`` category logits of M grid cells.
        labels: ``(M,)`` int64 in ``[0, C]``; ``C`` means background (an all-zero one-hot row).
        avg_factor: the normalizer, ``num_positives + 1`` in SOLO; defaults to ``M``.
    """
    logits = logits.float()
    onehot = F.one_hot(labels, num_classes + 1)[:, :num_classes].to(logits.dtype)
    # imported here: torchvision.ops imports torch._dynamo (~1.5 s), which inference never needs
    from torchvision.ops import sigmoid_focal_loss as _tv_sigmoid_focal_loss
    loss = _tv_sigmoid_focal_loss(logits, onehot, alpha=alpha, gamma=gamma, reduction="sum")
    return loss / (avg_factor if avg_factor is not None else max(len(labels), 1))


def dice_loss(mask_probs: Tensor, targets: Tensor, eps: float = 1e-3) -> Tensor:
    """Per-instance Dice loss ``1 - 2 sum(p t) / (sum(p^2) + sum(t^2))`` (SOLO's form, with eps on both sums).

    Args:
        mask_probs: ``(N, H, W)`` probabilities in [0, 1].
        targets: ``(N, H, W)`` binary masks (any dtype).
    Returns: ``(N,)`` float32 losses in [0, 1].
    """
    p = mask_probs.float().flatten(1)
    t = targets.float().flatten(1)
    inter = (p * t).sum(1)
    return 1 - 2 * inter / ((p * p).sum(1) + eps + (t * t).sum(1) + eps)


class FocalLoss(nn.Module):
    """The category loss module (named ``loss_cate`` in the head, as in the official printout)."""

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, loss_weight: float = 1.0):
        super().__init__()
        self.alpha, self.gamma, self.loss_weight = alpha, gamma, loss_weight

    def forward(self, logits: Tensor, labels: Tensor, num_classes: int, avg_factor=None) -> Tensor:
        return self.loss_weight * sigmoid_focal_loss(logits, labels, num_classes, self.alpha, self.gamma, avg_factor)


def solov2_losses(cate_preds: list[Tensor], mask_preds: Tensor, targets: "SOLOv2Targets", num_classes: int,
                  loss_cate: FocalLoss, ins_loss_weight: float = 3.0) -> dict[str, Tensor]:
    """Combine the two losses given the assigned targets.

    Args:
        cate_preds: per level ``(B, C, S_l, S_l)`` category logits.
        mask_preds: ``(P, H/4, W/4)`` mask logits of the P positive cells (in ``targets.pos_*`` order).
        targets: the output of :func:`solov2.targets.build_targets`.
    Returns: ``{"loss_ins": ..., "loss_cate": ...}``, already weighted.
    """
    flat_logits = torch.cat([p.permute(0, 2, 3, 1).reshape(-1, num_classes) for p in cate_preds])
    num_pos = targets.cate_labels.lt(num_classes).sum()
    loss_c = loss_cate(flat_logits, targets.cate_labels, num_classes, avg_factor=num_pos + 1)
    if mask_preds.shape[0] == 0:
        # Keep the graph connected (DDP needs every parameter to get a gradient) with an exact zero.
        loss_i = mask_preds.sum().float() * 0.0
    else:
        loss_i = dice_loss(mask_preds.float().sigmoid(), targets.mask_targets).mean()
    return {"loss_ins": loss_i * ins_loss_weight, "loss_cate": loss_c}

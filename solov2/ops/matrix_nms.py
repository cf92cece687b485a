"""Matrix NMS (SOLOv2, Sec. 4.2): decays every mask's score by its overlap with higher-scoring masks of
the same class, in parallel, with no sequential suppression loop."""
from __future__ import annotations

import torch
from torch import Tensor


def matrix_nms(seg_masks: Tensor, cate_labels: Tensor, cate_scores: Tensor, kernel: str = "gaussian",
               sigma: float = 2.0, sum_masks: Tensor | None = None) -> Tensor:
    """Return the decayed scores.

    Args:
        seg_masks: ``(N, H, W)`` binary masks (bool or float), sorted by score, descending.
        cate_labels: ``(N,)`` class of each mask; masks of different classes never decay each other.
        cate_scores: ``(N,)`` scores, descending.
        kernel: ``"gaussian"`` (``exp(-sigma iou^2)``) or ``"linear"`` (``1 - iou``).
        sigma: the Gaussian kernel's parameter.
        sum_masks: ``(N,)`` mask areas, if already known.
    Returns: ``(N,)`` float tensor of updated scores (empty for empty input).
    """
    n = cate_labels.numel()
    if n == 0:
        return cate_scores.new_zeros(0)
    if kernel not in ("gaussian", "linear"):
        raise ValueError(f"matrix_nms: kernel must be 'gaussian' or 'linear', got {kernel!r}")
    masks = seg_masks.reshape(n, -1).float()
    if sum_masks is None:
        sum_masks = masks.sum(1)
    sum_masks = sum_masks.float()
    inter = masks @ masks.t()
    union = sum_masks[:, None] + sum_masks[None, :] - inter
    # iou[i, j] for i < j only: mask j is decayed by every higher-scoring mask i.
    iou = (inter / union.clamp(min=1e-6)).triu(diagonal=1)
    same_class = (cate_labels[:, None] == cate_labels[None, :]).triu(diagonal=1)
    decay_iou = iou * same_class
    # How much mask i was itself suppressed: its largest IoU with a higher-scoring mask of its class.
    compensate_iou = decay_iou.max(dim=0).values[:, None].expand(n, n)
    if kernel == "gaussian":
        decay = torch.exp(-sigma * (decay_iou ** 2 - compensate_iou ** 2))
    else:
        decay = (1 - decay_iou) / (1 - compensate_iou).clamp(min=1e-6)
    return cate_scores * decay.min(dim=0).values

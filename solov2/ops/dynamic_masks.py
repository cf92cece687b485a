"""Dynamic convolution: each positive cell's predicted kernel applied to the shared mask features."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


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

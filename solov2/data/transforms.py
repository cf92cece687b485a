"""Data-side augmentation. Resizing, normalization and padding happen inside the model
(``solov2/models/transform.py``), so a data set only flips."""
from __future__ import annotations

from torch import Tensor

__all__ = ["hflip"]


def hflip(image: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
    """Mirror left-right. ``image`` ``(3, H, W)`` uint8, ``masks`` ``(N, H, W)`` bool (N may be 0)."""
    return image.flip(-1), masks.flip(-1)

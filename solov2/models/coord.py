"""CoordConv input: two channels of normalized x and y coordinates in [-1, 1]."""
from __future__ import annotations

import torch
from torch import Tensor


def append_coords(x: Tensor) -> Tensor:
    """``(B, C, H, W)`` -> ``(B, C + 2, H, W)``, channel C is x and C+1 is y, as in the official code."""
    b, _, h, w = x.shape
    xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype)
    ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    coords = torch.stack([grid_x, grid_y]).unsqueeze(0).expand(b, -1, -1, -1)
    return torch.cat([x, coords], dim=1)

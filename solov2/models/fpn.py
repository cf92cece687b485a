"""Feature Pyramid Network (Lin et al. 2017) as configured in SOLOv2."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from solov2.models.layers import ConvModule, ModuleList


class FPN(nn.Module):
    """Lateral 1x1 convs, top-down nearest upsampling, 3x3 output convs; extra levels by max pooling.

    Args:
        in_channels: channels of C2..C5, e.g. ``[256, 512, 1024, 2048]``.
        out_channels: channels of every output (256).
        num_outs: number of outputs; levels past the inputs are stride-2 subsamplings of the last one.

    Input: C2..C5 ``(B, C_i, H/2^(i+1), W/2^(i+1))``. Output: P2..P6, each ``(B, out_channels, ., .)``.
    """

    def __init__(self, in_channels: list[int], out_channels: int = 256, num_outs: int = 5):
        super().__init__()
        if num_outs < len(in_channels):
            raise ValueError(f"FPN: num_outs ({num_outs}) < number of inputs ({len(in_channels)})")
        self.num_outs = num_outs
        self.lateral_convs = ModuleList(ConvModule(c, out_channels, 1) for c in in_channels)
        self.fpn_convs = ModuleList(ConvModule(out_channels, out_channels, 3, padding=1) for _ in in_channels)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, inputs: list[Tensor]) -> list[Tensor]:
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:],
                                                              mode="nearest")
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals)]
        while len(outs) < self.num_outs:
            # The official FPN (add_extra_convs=False) takes P6 as a 1x1, stride-2 max pool of P5.
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return outs

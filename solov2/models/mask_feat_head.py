"""The unified mask feature branch of SOLOv2 (Sec. 3.2.1 of the paper)."""
from __future__ import annotations

from torch import Tensor, nn

from solov2.models.coord import append_coords
from solov2.models.dcn import is_deform_conv
from solov2.models.layers import ConvModule, ModuleList, Upsample


class MaskFeatHead(nn.Module):
    """Fuses P2..P5 into one mask feature map at 1/4 of the input resolution.

    Level ``i`` passes through ``max(i, 1)`` 3x3 conv-GN-ReLU blocks, each but the first level followed by a
    bilinear x2 upsampling, so every level arrives at the P2 resolution; the sum goes through a 1x1
    conv-GN-ReLU (``conv_pred``). The coarsest level gets two CoordConv channels first (hence 258 inputs).

    Args:
        in_channels: FPN channels (256).
        out_channels: hidden channels (128).
        num_classes: output channels, i.e. the dynamic kernel's input width E (128 light, 256 full).
        start_level, end_level: FPN levels used (0..3, i.e. P2..P5).
        conv_cfg: the official key: ``dict(type='DCNv2')`` makes every conv of the branch deformable, the 1x1
            ``conv_pred`` included (official R101-DCN and X101-DCN).

    Input: the FPN outputs. Output: ``(B, num_classes, H/4, W/4)``.
    """

    def __init__(self, in_channels: int = 256, out_channels: int = 128, start_level: int = 0, end_level: int = 3,
                 num_classes: int = 128, conv_cfg: dict | None = None):
        super().__init__()
        self.start_level, self.end_level = start_level, end_level
        self.convs_all_levels = ModuleList()
        for i in range(start_level, end_level + 1):
            level = nn.Sequential()
            for j in range(max(i, 1)):
                # the first conv reads the level (the coarsest one with 2 CoordConv channels), later ones its output
                chn = out_channels if j > 0 else in_channels + 2 * (i == end_level)
                level.add_module(f"conv{j}", ConvModule(chn, out_channels, 3, padding=1, norm="GN",
                                                        activation="relu", inplace=False,
                                                        conv_cfg=conv_cfg))
                if i > 0:
                    level.add_module(f"upsample{j}", Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.convs_all_levels.append(level)
        self.conv_pred = nn.Sequential(ConvModule(out_channels, num_classes, 1, norm="GN", activation="relu",
                                                  conv_cfg=conv_cfg))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
        for m in self.modules():  # deformable convs start as plain convs: zero offsets
            if is_deform_conv(m):
                nn.init.normal_(m.weight, std=0.01)
                m.init_offset()

    def forward(self, inputs: list[Tensor]) -> Tensor:
        feature = None
        for i, level in enumerate(self.convs_all_levels):
            x = inputs[self.start_level + i]
            if self.start_level + i == self.end_level:
                x = append_coords(x)
            out = level(x)
            feature = out if feature is None else feature + out
        return self.conv_pred(feature)

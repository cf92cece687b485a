"""Small building blocks named and printed as in the official SOLO code (mmdet 1.x).

``ConvModule``'s attribute names (``conv``, ``gn``/``bn``, ``activate``) are those of the official
checkpoints, so their state_dicts load without renaming. The subclasses of ``BatchNorm2d``, ``GroupNorm``,
``Upsample`` and ``ModuleList`` change nothing but how they print: newer PyTorch prints ``bias=True``,
quotes the upsampling mode and folds repeated list entries, and ``print(model)`` must show the same tree
as the official printout.
"""
from __future__ import annotations

from torch import Tensor, nn

from solov2.models.dcn import build_conv


class BatchNorm2d(nn.BatchNorm2d):
    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class ModuleList(nn.ModuleList):
    """``nn.ModuleList`` printed entry by entry (newer PyTorch prints ``(0-3): 4 x ConvModule``)."""

    __repr__ = nn.Module.__repr__


class GroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` printed as mmdet 1.x printed it (without the ``bias=`` field of newer PyTorch)."""

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


class Upsample(nn.Upsample):
    """``nn.Upsample`` printed as the official printout shows it (``mode=bilinear``, unquoted)."""

    def extra_repr(self) -> str:
        return f"scale_factor={float(self.scale_factor)}, mode={self.mode}"


class ConvModule(nn.Module):
    """``Conv2d`` -> optional ``GroupNorm(32)`` / ``BatchNorm2d`` -> optional ``ReLU``.

    Args:
        norm: ``None``, ``"GN"`` (32 groups) or ``"BN"``. The conv has a bias only without a norm.
        activation: ``None`` or ``"relu"``.
        inplace: whether the ReLU works in place (the official code uses both, and prints them).
        conv_cfg: the official ``conv_cfg``: ``None`` (plain ``Conv2d``), ``dict(type='DCN')`` or
            ``dict(type='DCNv2')`` (deformable, :mod:`solov2.models.dcn`; ``conv.conv_offset.*`` keys).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 norm: str | None = None, activation: str | None = None, inplace: bool = True,
                 conv_cfg: dict | None = None):
        super().__init__()
        self.conv = build_conv(conv_cfg, in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                               bias=norm is None)
        self.norm_name = None
        if norm == "GN":
            self.norm_name = "gn"
            self.gn = GroupNorm(32, out_channels)
        elif norm == "BN":
            self.norm_name = "bn"
            self.bn = BatchNorm2d(out_channels)
        elif norm is not None:
            raise ValueError(f"ConvModule: unknown norm {norm!r} (expected None, 'GN' or 'BN')")
        if activation == "relu":
            self.activate = nn.ReLU(inplace=inplace)
        elif activation is not None:
            raise ValueError(f"ConvModule: unknown activation {activation!r} (expected None or 'relu')")
        self.with_activation = activation is not None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.norm_name is not None:
            x = getattr(self, self.norm_name)(x)
        if self.with_activation:
            x = self.activate(x)
        return x

"""Deformable convolutions v1 and v2 on ``torchvision.ops.deform_conv2d`` (no compiled extension of ours).

The modules carry the parameter names of the official SOLO code (mmdet 1.x ``mmdet/ops/dcn/deform_conv.py``),
so its DCN checkpoints load with no renaming:

* ``DeformConvPack`` (config ``type='DCN'``, DCNv1): ``weight`` ``(out, in/groups, kh, kw)``, no bias, and
  ``conv_offset``, a plain ``Conv2d(in, 2*dg*kh*kw, kernel, stride, padding, bias=True)`` that predicts the
  sampling offsets from the same input.
* ``ModulatedDeformConvPack`` (``type='DCNv2'``, DCNv2): ``weight``, optional ``bias``, and ``conv_offset``
  with ``3*dg*kh*kw`` outputs. The official code splits them as ``o1, o2, mask = chunk(out, 3, dim=1)``,
  ``offset = cat(o1, o2)``, ``mask = sigmoid(mask)``: the first ``2*dg*kh*kw`` channels are the offsets, the
  last ``dg*kh*kw`` the modulation logits.

Offset layout: mmdet's CUDA kernel reads, per deformable group and kernel point ``p = i*kw + j``, channel
``2p`` as the vertical (dy) and ``2p + 1`` as the horizontal (dx) displacement; the mask channel of point ``p``
is ``p``. torchvision's ``deform_conv2d`` uses the same layout, so the channels go through unchanged
(``tests/test_dcn.py`` checks both against bilinear sampling written out by hand).

Both start with zero offsets (``conv_offset`` zero-initialised, as the official ``init_offset``): a fresh
DCNv1 computes exactly its plain convolution, a fresh DCNv2 the same scaled by sigmoid(0) = 0.5.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

__all__ = ["DeformConvPack", "ModulatedDeformConvPack", "CONV_TYPES", "build_conv", "is_deform_conv"]


class _DeformConvBase(nn.Module):
    """Shared state of the two packs; ``offset_channels_per_point`` is 2 (v1) or 3 (v2)."""

    offset_channels_per_point = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, deformable_groups: int = 1, bias: bool = False):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{type(self).__name__}: in_channels {in_channels} and out_channels {out_channels} "
                             f"must be divisible by groups {groups}")
        if in_channels % deformable_groups:
            raise ValueError(f"{type(self).__name__}: in_channels {in_channels} must be divisible by "
                             f"deformable_groups {deformable_groups}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride, self.padding, self.dilation = _pair(stride), _pair(padding), _pair(dilation)
        self.groups, self.deformable_groups = groups, deformable_groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels))
        else:
            self.register_parameter("bias", None)
        kh, kw = self.kernel_size
        # Not grouped, as the official pack: every offset sees all input channels.
        self.conv_offset = nn.Conv2d(in_channels, deformable_groups * self.offset_channels_per_point * kh * kw,
                                     self.kernel_size, stride=self.stride, padding=self.padding,
                                     dilation=self.dilation, bias=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform weights as ``nn.Conv2d`` (the official ``1/sqrt(fan_in)`` bound), zero bias and offsets."""
        bound = 1.0 / math.sqrt(self.in_channels * self.kernel_size[0] * self.kernel_size[1])
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        self.init_offset()

    def init_offset(self) -> None:
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def offset_and_mask(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(B, in, H, W)`` -> offsets ``(B, 2*dg*kh*kw, H', W')`` and mask ``(B, dg*kh*kw, H', W')`` or None."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in, H, W)`` -> ``(B, out, H', W')``, H' and W' as for ``nn.Conv2d`` with the same settings."""
        offset, mask = self.offset_and_mask(x)
        from torchvision.ops import deform_conv2d  # here, not at import: torchvision.ops imports torch._dynamo (~1.5 s)
        return deform_conv2d(x, offset, self.weight, self.bias, stride=self.stride, padding=self.padding,
                             dilation=self.dilation, mask=mask)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
                f"deformable_groups={self.deformable_groups}, bias={self.bias is not None}")


class DeformConvPack(_DeformConvBase):
    """DCNv1 (official ``type='DCN'``): ``conv_offset`` gives ``2*dg*kh*kw`` offsets, no modulation, no bias."""

    offset_channels_per_point = 2

    def __init__(self, *args, bias: bool = False, **kwargs):
        if bias:  # the official DeformConv asserts the same: it has no bias parameter
            raise ValueError("DeformConvPack (DCN): no bias (use a norm after it, or DCNv2)")
        super().__init__(*args, bias=False, **kwargs)

    def offset_and_mask(self, x: Tensor) -> tuple[Tensor, None]:
        return self.conv_offset(x), None


class ModulatedDeformConvPack(_DeformConvBase):
    """DCNv2 (official ``type='DCNv2'``): ``conv_offset`` gives offsets and modulation logits, ``o1, o2, m``."""

    offset_channels_per_point = 3

    def __init__(self, *args, bias: bool = True, **kwargs):
        super().__init__(*args, bias=bias, **kwargs)

    def offset_and_mask(self, x: Tensor) -> tuple[Tensor, Tensor]:
        out = self.conv_offset(x)
        n = out.shape[1] // 3
        # The official chunk(out, 3) then cat(o1, o2) is the first two thirds, unchanged.
        return out[:, : 2 * n], out[:, 2 * n:].sigmoid()


# The official ``conv_cfg`` types (mmdet 1.x ``build_conv_layer``): None or 'Conv' is a plain convolution.
CONV_TYPES = {"Conv": nn.Conv2d, "DCN": DeformConvPack, "DCNv2": ModulatedDeformConvPack}


def build_conv(conv_cfg: dict | None, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
               dilation=1, groups: int = 1, bias: bool = True) -> nn.Module:
    """A convolution from an official ``conv_cfg`` (``None``, ``dict(type='DCN' | 'DCNv2', deformable_groups=1)``).

    Raises ``ValueError`` (one line) for an unknown type or key.
    """
    cfg = dict(conv_cfg or {})
    type_name = cfg.pop("type", "Conv")
    if type_name not in CONV_TYPES:
        raise ValueError(f"conv type {type_name!r} unknown; known: {sorted(CONV_TYPES)}")
    if type_name == "Conv":
        if cfg:
            raise ValueError(f"conv type 'Conv' takes no options, got {sorted(cfg)}")
        return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, bias=bias)
    unknown = sorted(set(cfg) - {"deformable_groups"})
    if unknown:
        raise ValueError(f"conv type {type_name!r}: unknown option(s) {unknown}; allowed: ['deformable_groups']")
    return CONV_TYPES[type_name](in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                 dilation=dilation, groups=groups, bias=bias, **cfg)


def is_deform_conv(module: nn.Module) -> bool:
    return isinstance(module, _DeformConvBase)

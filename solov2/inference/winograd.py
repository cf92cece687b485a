"""NNPACK's Winograd F(6x6, 3x3) for the wide 3x3 convolutions on CPU: which convolutions can use it, the module
that runs it, and the fixed rule that replaces them (:mod:`solov2.inference.tuning` measures per machine instead)."""
from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

__all__ = ["nnpack_available", "WinogradConv2d", "winograd_eligible", "use_winograd"]


@functools.lru_cache(maxsize=None)
def nnpack_available() -> bool:
    """Whether this PyTorch build has NNPACK and it initialises on this CPU.

    ``torch._nnpack_available()`` also initialises NNPACK; until it has been called once,
    ``torch._nnpack_spatial_convolution`` fails, so every Winograd call goes through this check first.
    """
    try:
        return bool(torch._nnpack_available())
    except (AttributeError, RuntimeError):
        return False


class WinogradConv2d(nn.Conv2d):
    """A 3x3, stride-1 ``Conv2d`` that runs on NNPACK's Winograd F(6x6, 3x3) when that is faster.

    That is: CPU, float32, no autograd, no autocast, and a feature map of at least ``min_pixels`` pixels.
    On small maps (SOLOv2's head grids, the backbone's deeper stages) the per-call weight transform costs
    more than it saves, and everything else (CUDA, bf16, training) runs the ordinary ``Conv2d``. Winograd
    reorders the arithmetic, so outputs differ from the direct convolution by float rounding (~1e-5
    relative on SOLOv2's outputs). The output is NCHW-contiguous whatever the input's memory format.
    """

    min_pixels = 56 * 96

    def forward(self, x: Tensor) -> Tensor:
        if (x.device.type != "cpu" or x.dtype != torch.float32 or x.dim() != 4 or torch.is_grad_enabled()
                or torch.is_autocast_enabled("cpu") or x.shape[-2] * x.shape[-1] < self.min_pixels
                or torch.jit.is_tracing() or torch.compiler.is_compiling() or not nnpack_available()):
            # Tracing (ONNX / TorchScript export) and torch.compile get the portable convolution.
            return super().forward(x)
        try:
            return torch._nnpack_spatial_convolution(x.contiguous(), self.weight.contiguous(), self.bias,
                                                     list(self.padding), [1, 1])
        except RuntimeError:  # NNPACK refused this input (it has limits of its own): same result the slow way
            return super().forward(x)


def winograd_eligible(conv: nn.Module, min_in_channels: int = 0) -> bool:
    """Whether ``conv`` is a plain 3x3, stride-1, padding-1 ``Conv2d`` with at least ``min_in_channels`` inputs:
    the convolutions NNPACK's Winograd can run and tuning measures."""
    return (type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros"
            and conv.padding == (1, 1) and conv.in_channels >= min_in_channels)


def use_winograd(model: nn.Module, min_in_channels: int = 256,
                 choices: dict[nn.Module, bool] | None = None) -> nn.Module:
    """Replace, in place, every 3x3 stride-1 ``Conv2d`` with at least ``min_in_channels`` inputs by a
    :class:`WinogradConv2d` sharing its parameters; returns ``model``. With ``choices`` (conv -> bool, from
    :func:`solov2.inference.tuning.tune_winograd`), exactly the convs it marks True are replaced instead.

    The fixed rule: in SOLOv2 light R50 at 448x768 that is the FPN's and the mask branch's convs on the 1/4 and
    1/8 maps: measured in the network on this project's 2-core CPU, the FPN's 1/4-scale conv went from 112 to
    60 ms and the network (BatchNorm folded, channels_last) from 736 to 665 ms
    (``docs/history.md``). Narrower convs
    (ResNet's 64/128-channel 3x3s) were slower with Winograd in the same measurement, hence the default.
    That is one machine's finding; :func:`optimize_for_inference` measures on the machine it runs on instead.
    """
    for parent in list(model.modules()):
        for name, conv in list(parent.named_children()):
            if choices is not None:
                if not (choices.get(conv) and winograd_eligible(conv, 0)):
                    continue
            elif not winograd_eligible(conv, min_in_channels):
                continue
            new = WinogradConv2d(conv.in_channels, conv.out_channels, 3, padding=1, bias=conv.bias is not None,
                                 device=conv.weight.device, dtype=conv.weight.dtype)
            new.weight, new.bias = conv.weight, conv.bias
            if choices is not None:  # measured at its own map size (inputs are resized to the test scale)
                new.min_pixels = 0
            setattr(parent, name, new)
    return model

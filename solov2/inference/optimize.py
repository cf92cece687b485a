"""Inference-only speedups that keep the results the same (up to float rounding).

* :func:`fuse_conv_bn` folds every frozen ``BatchNorm2d`` into the conv that feeds it (the ResNet backbone,
  and ``ConvModule(norm="BN")`` if a config uses one). GroupNorm, used by the light heads, depends on the
  input's statistics and cannot be folded.
* :func:`to_channels_last` stores conv weights NHWC, so that oneDNN / cuDNN run NHWC kernels.
* :func:`~solov2.inference.winograd.use_winograd` runs the large 3x3 convolutions on CPU with NNPACK's Winograd
  algorithm, which needs about a fifth of the multiplications of oneDNN's direct convolution (differences ~1e-5
  relative).
* :func:`store_conv_weights_in` keeps the conv weights in the dtype the model runs under autocast (bf16 / fp16),
  which autocast would otherwise cast from float32 on every call.
* :func:`optimize_for_inference` applies them (and optionally ``torch.compile``) to a copy of the model.

The returned model is for inference only: its parameters do not require gradients, its BatchNorms are gone
(so ``train()`` would not bring them back), and ``print(model)`` shows ``Conv2d(..., bias=True)`` and
``Identity()`` where the official tree has ``Conv2d(..., bias=False)`` and ``BatchNorm2d``. Its
``state_dict`` therefore does not match the official checkpoints: save and load the unfused model.

Example::

    >>> from solov2 import build_model, load_config
    >>> from solov2.inference.optimize import optimize_for_inference
    >>> model = build_model(load_config("configs/solov2/cityscapes/solov2_light_448_r50_fpn_2gpu_3x.py"))
    >>> fast = optimize_for_inference(model)          # a fused copy; `model` is unchanged
    >>> with torch.inference_mode():
    ...     results = fast([torch.randint(0, 255, (3, 448, 768), dtype=torch.uint8)])
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from solov2.inference.tuning import tune_winograd, tuning_enabled
from solov2.inference.winograd import nnpack_available, use_winograd

__all__ = ["fuse_conv_bn", "to_channels_last", "store_conv_weights_in", "optimize_for_inference", "count_batchnorms"]


def _conv_feeding(parent: nn.Module, bn_name: str, children: dict[str, nn.Module]) -> str | None:
    """Name of the sibling conv whose output goes straight into the BatchNorm ``bn_name``, or None.

    The pairings are the ones our modules use: ``convN -> bnN`` (ResNet stem and blocks), ``conv -> bn``
    (``ConvModule``) and consecutive entries of an ``nn.Sequential`` (ResNet ``downsample``).
    """
    if isinstance(parent, nn.Sequential):
        names = list(children)
        i = names.index(bn_name)
        return names[i - 1] if i > 0 else None
    if bn_name.startswith("bn"):
        return "conv" + bn_name[2:]
    return None


def fuse_conv_bn(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Fold each ``BatchNorm2d`` into the ``Conv2d`` that feeds it; returns the model in eval mode.

    The conv becomes ``Conv2d(..., bias=True)`` with ``w' = w * g / sqrt(var + eps)`` and
    ``b' = (b - mean) * g / sqrt(var + eps) + beta``; the BatchNorm becomes ``nn.Identity()`` so that the
    modules' forward code runs unchanged. Exact in eval mode (running statistics); a BatchNorm with no conv
    right before it is left as it is.

    Args:
        model: any module, e.g. a :class:`~solov2.models.SOLOv2`.
        inplace: modify ``model`` itself instead of a deep copy.
    """
    model = model if inplace else copy.deepcopy(model)
    model.eval()
    for parent in list(model.modules()):
        children = dict(parent.named_children())
        for name, bn in children.items():
            if not isinstance(bn, nn.BatchNorm2d):
                continue
            conv_name = _conv_feeding(parent, name, children)
            conv = children.get(conv_name) if conv_name else None
            if not isinstance(conv, nn.Conv2d) or conv.out_channels != bn.num_features:
                continue
            if bn.running_mean is None:  # track_running_stats=False: batch statistics even in eval
                continue
            setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
            setattr(parent, name, nn.Identity())
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def count_batchnorms(model: nn.Module) -> int:
    """Number of ``BatchNorm2d`` modules left (0 for a fully fused SOLOv2)."""
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def to_channels_last(model: nn.Module) -> nn.Module:
    """Store the model's 4-D weights in ``torch.channels_last`` (NHWC) memory format, in place.

    Convolutions whose weight is NHWC produce NHWC outputs, so the format propagates through the network
    without converting the input. Values are unchanged; only the memory layout (and thus speed) differs.
    """
    return model.to(memory_format=torch.channels_last)


def store_conv_weights_in(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Store every ``Conv2d``'s weight and bias in ``dtype`` (in place); returns ``model``.

    Under ``torch.autocast(dtype=dtype)`` a convolution casts its float32 weight to ``dtype`` on every call (the
    autocast weight cache only keeps casts of parameters that require gradients, within one ``autocast``
    block): ~100 casts per SOLOv2 call. Stored in ``dtype`` they are not cast, and the results are the same,
    bit for bit, since autocast rounds them to ``dtype`` anyway. The model then runs only under autocast of
    ``dtype`` (a float32 input outside it meets ``dtype`` weights). GroupNorm and the other modules keep their
    float32 parameters: autocast never casts those, so storing them otherwise would change results.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.weight.data = module.weight.data.to(dtype)
            if module.bias is not None:
                module.bias.data = module.bias.data.to(dtype)
    return model


def _tuned_choices(model: nn.Module) -> dict[nn.Module, bool] | None:
    """This machine's Winograd choices for a SOLOv2 on the CPU at its test scale (:mod:`solov2.inference.tuning`), or
    None (tuning off, not a SOLOv2, not on the CPU, no NNPACK): the fixed rule then."""
    transform = getattr(model, "transform", None)
    if not (tuning_enabled() and hasattr(model, "forward_features") and transform is not None
            and nnpack_available()):
        return None
    param = next(model.parameters(), None)
    if param is None or param.device.type != "cpu" or param.dtype != torch.float32:
        return None
    return tune_winograd(model, transform.test_input_size()) or None


def optimize_for_inference(model: nn.Module, fuse: bool = True, channels_last: bool = True,
                           winograd: bool = True, compile: bool = False, tune: bool = True,
                           autocast_dtype: torch.dtype | None = None) -> nn.Module:
    """A copy of ``model`` in eval mode with the chosen speedups; ``model`` itself is not modified.

    Args:
        fuse: fold BatchNorm into convs (:func:`fuse_conv_bn`): 53 fewer passes over the backbone's
            feature maps, a few percent on CPU.
        channels_last: NHWC weights (:func:`to_channels_last`): with BatchNorm folded, oneDNN's NHWC
            kernels made the whole network 1.15x faster on the 2-core CPU (``docs/history.md``).
        winograd: :func:`use_winograd` (only acts on CPU in float32 without autograd).
        tune: choose the Winograd convs by this machine's measurements (:mod:`solov2.inference.tuning`: measured once
            per CPU, torch version and thread count, a few seconds, then cached) instead of the fixed
            ``min_in_channels=256`` rule; off where ``SOLOV2_TUNE=0``.
        autocast_dtype: the dtype the model will run under ``torch.autocast`` (bf16 / fp16), or None (float32):
            conv weights are stored in it (:func:`store_conv_weights_in`; the model then runs only under that
            autocast), and Winograd, which only acts in float32, is neither applied nor tuned.
        compile: ``torch.compile`` the backbone, FPN and mask branch of a SOLOv2, or the whole module
            otherwise. Post-processing has data-dependent shapes and stays eager. The first call
            with each new input size compiles (tens of seconds to minutes on CPU; needs a C++ compiler).

    Run the returned model under ``torch.inference_mode()`` for the last bit of speed.
    """
    model = fuse_conv_bn(model) if fuse else copy.deepcopy(model).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if channels_last:
        to_channels_last(model)
    if winograd and autocast_dtype is None:
        use_winograd(model, choices=_tuned_choices(model) if tune else None)
    if autocast_dtype is not None:
        store_conv_weights_in(model, autocast_dtype)
    if compile:
        if hasattr(model, "forward_features"):
            # The heavy, fixed-shape parts; the head runs per level on small grids and stays eager.
            for name in ("backbone", "neck", "mask_feat_head"):
                setattr(model, name, torch.compile(getattr(model, name)))
        else:
            model = torch.compile(model)
    return model

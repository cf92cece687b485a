"""Export SOLOv2 to ONNX, OpenVINO IR (converted from the ONNX by OpenVINO, :mod:`solov2.deploy.openvino`) or
TorchScript.

The exported graph takes the prepared image ``input (1, 3, H, W)`` and its resized size ``image_size (2,)``
and returns what post-processing reads (:meth:`SOLOv2.predict_cells` for one image: ``cate_scores``,
``kernels``, ``mask_feat``), or with ``with_postprocess=True`` (``solov2 export --with-postprocess``) the
post-processed fixed-size ``scores``, ``labels``, ``mask_probs`` (:func:`solov2.postprocess.postprocess_fixed`).
The contract (pre-processing, inputs, outputs, metadata, what a deployment does with the outputs) is written
once, in docs/deployment.md; the names and the metadata are :mod:`solov2.deploy.contract`'s. Running such a
file: :mod:`solov2.deploy.runtime`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from solov2.deploy.contract import FORMAT_VERSION, INPUT_NAMES, OUTPUT_NAMES, POSTPROCESSED_NAMES, metadata_props
from solov2.deploy.dcn_onnx import prepare_onnx_export
from solov2.deploy.runtime import quiet_deprecations
from solov2.models.transform import padded_size
from solov2.postprocess import postprocess_fixed

__all__ = ["SOLOv2ExportWrapper", "export_onnx", "export_openvino", "export_torchscript", "default_input_size"]


class SOLOv2ExportWrapper(nn.Module):
    """``(1, 3, H, W)`` normalized, padded image and ``(2,)`` its resized ``(h, w)`` ->
    ``(cate_scores (M, C), kernels (M, D), mask_feat (E, Hi/4, Wi/4))``, or with ``with_postprocess`` ->
    ``(scores (D,), labels (D,), mask_probs (D, Hi/4, Wi/4))``: :meth:`SOLOv2.predict_cells` for one image.

    The input may be larger than the image's own padded size ``(Hi, Wi)`` (a static graph). So that the
    backbone and FPN compute what they would for the image alone, every convolution and pooling there that
    reads neighbouring pixels sees its input zeroed outside the region the image's own padded input has at
    that resolution, as its zero padding would be (after a ReLU, zero pads a max pool as -inf does);
    :meth:`SOLOv2.image_features` then crops every level to that region. Use it as a context manager
    (``with SOLOv2ExportWrapper(model) as wrapper:``): the masking hooks are on the model only inside.
    ``zero_outside=False`` leaves them out (a dynamic graph, whose input is the image's own padded size:
    the zeroing would change nothing; it cost 7% of the network's time in one eager measurement).
    """

    def __init__(self, model: nn.Module, with_postprocess: bool = False, zero_outside: bool = True):
        super().__init__()
        self.model = model
        self.with_postprocess = with_postprocess
        self.zero_outside = zero_outside
        self._region: tuple[Tensor, Tensor, int, int] | None = None
        self._hooks: list = []

    def __enter__(self) -> "SOLOv2ExportWrapper":
        for part in (self.model.backbone, self.model.neck) if self.zero_outside else ():
            for m in part.modules():
                if isinstance(m, (nn.Conv2d, nn.MaxPool2d)) and _reads_neighbours(m):
                    self._hooks.append(m.register_forward_pre_hook(self._zero_outside))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def _zero_outside(self, module: nn.Module, args: tuple) -> tuple:
        x = args[0]
        region_h, region_w, full_h, full_w = self._region
        h, w = x.shape[-2], x.shape[-1]
        # This resolution is the input's / stride; the region's size here is (Hi, Wi) / stride (exact:
        # Hi, Wi are multiples of 32 and strides up to 32).
        rows = torch.arange(h, device=x.device) < region_h * h // full_h
        cols = torch.arange(w, device=x.device) < region_w * w // full_w
        return (x * (rows[:, None] & cols[None, :]).to(x.dtype),) + tuple(args[1:])

    def forward(self, x: Tensor, image_size: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        region_h, region_w = padded_size((image_size[0], image_size[1]), self.model.transform.size_divisor)
        self._region = (region_h, region_w, x.shape[-2], x.shape[-1])
        scores, kernels, mask_feats = self.model.predict_cells(x, image_size[None])
        if not self.with_postprocess:
            return scores[0], kernels[0], mask_feats[0]
        head = self.model.bbox_head
        return postprocess_fixed(scores[0], kernels[0], mask_feats[0], head.cell_strides(x.device),
                                 self.model.test_cfg, head.kernel_size)


def _reads_neighbours(m: nn.Module) -> bool:
    """A layer whose output at a pixel reads other pixels than its own (stride-1 1x1 convolutions do not)."""
    ks, stride = m.kernel_size, m.stride
    return any(k > 1 for k in (ks if isinstance(ks, tuple) else (ks,))) or \
        any(s > 1 for s in (stride if isinstance(stride, tuple) else (stride,)))


def default_input_size(model: nn.Module) -> tuple[int, int]:
    """The static input size that holds an image of any aspect ratio resized to the test scale: a square
    of the scale's long side, rounded up to the size divisor."""
    side = padded_size((max(model.transform.test_scale),) * 2, model.transform.size_divisor)[0]
    return side, side


def _check_input_size(model: nn.Module, input_size: Sequence[int] | None) -> tuple[int, int]:
    if input_size is None:
        return default_input_size(model)
    d = model.transform.size_divisor
    if len(input_size) != 2 or any(int(s) <= 0 or int(s) % d for s in input_size):
        raise ValueError(f"input_size must be (H, W) with positive multiples of {d}, got {tuple(input_size)}")
    return int(input_size[0]), int(input_size[1])


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _export_meta(model: nn.Module, input_size: tuple[int, int] | None, fmt: str, with_postprocess: bool,
                 class_names: Sequence[str] | None) -> dict[str, Any]:
    """What :class:`ExportedSOLOv2` needs to pre- and post-process without the config."""
    head = model.bbox_head
    return {
        "format_version": FORMAT_VERSION,
        "format": fmt,
        "postprocess": "graph" if with_postprocess else "python",
        "input_size": list(input_size) if input_size else None,
        "transform": dataclasses.asdict(model.transform),
        "test_cfg": dataclasses.asdict(model.test_cfg),
        "num_classes": head.num_classes,
        "class_names": list(class_names) if class_names is not None else None,
        "num_grids": list(head.num_grids),
        "strides": list(head.strides),
        "kernel_size": head.kernel_size,
    }



def _check_class_names(model: nn.Module, class_names: Sequence[str] | None) -> None:
    if class_names is not None and len(class_names) != model.bbox_head.num_classes:
        raise ValueError(f"class_names: {len(class_names)} names for a model of {model.bbox_head.num_classes} "
                         f"classes")


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    """Export in eval mode, and give the model back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _example_inputs(model: nn.Module, h: int, w: int) -> tuple[Tensor, Tensor]:
    # Traced with an image smaller than the input, so that every crop is a real one in the trace.
    d = model.transform.size_divisor
    size = (max(h - d - d // 2, 1), max(w - d - d // 2, 1))
    return torch.zeros(1, 3, h, w, device=_device_of(model)), torch.tensor(size, device=_device_of(model))


def export_onnx(model: nn.Module, out_path: str, input_size: Sequence[int] | None = None, dynamic: bool = False,
                opset: int = 17, with_postprocess: bool = False, class_names: Sequence[str] | None = None) -> str:
    """Write ``model`` (a :class:`~solov2.models.SOLOv2`) as an ONNX graph with the I/O of this module's docstring.

    Args:
        input_size: (H, W) of the input, multiples of 32; None: :func:`default_input_size`. With
            ``dynamic=False`` the graph accepts only this size; with ``dynamic=True`` any multiple of 32, and
            the input must be the image's own padded size (``ceil(h/32)*32 x ceil(w/32)*32``).
        opset: ONNX opset (17 works with onnxruntime >= 1.14).
        with_postprocess: put the post-processing, Matrix NMS included, into the graph (module docstring).
        class_names: stored in the metadata (one per class).
    Returns: ``out_path``.

    Uses the TorchScript-based exporter (``dynamo=False``): it needs no ``onnxscript`` and handles the
    shape-dependent ``linspace`` of the CoordConv channels.
    """
    import onnx

    h, w = _check_input_size(model, input_size)
    _check_class_names(model, class_names)
    names = POSTPROCESSED_NAMES if with_postprocess else OUTPUT_NAMES
    # The mask output always follows the image's own padded region; the input's size only if dynamic.
    dynamic_axes = {names[2]: {1: "feat_height", 2: "feat_width"}}
    if dynamic:
        dynamic_axes["input"] = {2: "height", 3: "width"}
    opset = prepare_onnx_export(model, opset, out_path)  # DCN: opset 19 DeformConv, or a one-line error
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with quiet_deprecations(), _eval_mode(model), torch.no_grad(), \
            SOLOv2ExportWrapper(model, with_postprocess, zero_outside=not dynamic) as wrapper:
        torch.onnx.export(wrapper, _example_inputs(model, h, w), out_path, dynamo=False, opset_version=opset,
                          input_names=INPUT_NAMES, output_names=names, dynamic_axes=dynamic_axes,
                          do_constant_folding=True)
    proto = onnx.load(out_path)
    meta = _export_meta(model, None if dynamic else (h, w), "onnx", with_postprocess, class_names)
    onnx.helper.set_model_props(proto, metadata_props(meta))
    onnx.save(proto, out_path)
    return out_path


def export_openvino(model: nn.Module, out_path: str, input_size: Sequence[int] | None = None, dynamic: bool = False,
                    with_postprocess: bool = False, class_names: Sequence[str] | None = None) -> str:
    """Write ``model`` as an OpenVINO IR (``out_path`` .xml and its .bin, float32 weights): :func:`export_onnx` with
    the same arguments, converted by ``openvino.convert_model``; the same inputs, outputs and metadata (in the
    IR's ``rt_info``). Returns ``out_path``."""
    from solov2.deploy.openvino import onnx_to_ir, save_ir
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(model, os.path.join(tmp, "model.onnx"), input_size, dynamic,
                                with_postprocess=with_postprocess, class_names=class_names)
        return save_ir(onnx_to_ir(onnx_path), out_path)


def export_torchscript(model: nn.Module, out_path: str, input_size: Sequence[int] | None = None,
                       with_postprocess: bool = False, class_names: Sequence[str] | None = None) -> str:
    """Write ``model`` as a traced TorchScript module with the I/O of this module's docstring.

    The trace is made at ``input_size`` (H, W), multiples of 32 (None: :func:`default_input_size`);
    :func:`load_exported` accepts only that size, as tracing may freeze shapes. Export a model that is on the
    CPU: a trace can keep the device it was made on, and :func:`load_exported` runs on the CPU.
    Returns ``out_path``.
    """
    h, w = _check_input_size(model, input_size)
    _check_class_names(model, class_names)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with quiet_deprecations():
        with _eval_mode(model), torch.no_grad(), SOLOv2ExportWrapper(model, with_postprocess) as wrapper:
            traced = torch.jit.trace(wrapper, _example_inputs(model, h, w), check_trace=False)
        meta = _export_meta(model, (h, w), "torchscript", with_postprocess, class_names)
        torch.jit.save(traced, out_path, _extra_files=metadata_props(meta))
    return out_path

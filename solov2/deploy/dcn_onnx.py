"""Exporting models with deformable convolutions (``torchvision::deform_conv2d``).

* TorchScript: the traced graph calls ``torchvision::deform_conv2d``; loading it needs torchvision's ops
  registered (``import torchvision`` first; :func:`solov2.deploy.runtime.load_exported` does).
* ONNX: the op becomes the standard ``DeformConv`` of opset 19 (same offset layout and mask as torchvision:
  ``(dy, dx)`` pairs per kernel point). torch's exporter has no rule for it, so :func:`prepare_onnx_export`
  registers one, raises the opset to 19 and, when onnxruntime is installed, checks that it runs
  ``DeformConv`` before anything is written: a runtime that lacks it gets a one-line error naming the op,
  never a file it cannot run.
"""
from __future__ import annotations

import functools
import logging

from torch import nn

from solov2.errors import one_line
from solov2.models.dcn import is_deform_conv

__all__ = ["DEFORM_OP", "ONNX_DEFORM_OPSET", "has_deform_conv", "prepare_onnx_export", "onnxruntime_runs_deform_conv"]

DEFORM_OP = "torchvision::deform_conv2d"
ONNX_DEFORM_OPSET = 19  # DeformConv entered the ONNX standard in opset 19


def has_deform_conv(model: nn.Module) -> bool:
    return any(is_deform_conv(m) for m in model.modules())


def _deform_conv_symbolic(g, input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
                          n_weight_grps, n_offset_grps, use_mask):
    from torch.onnx import symbolic_helper as sh
    ints = [sh._get_const(v, "i", name) for v, name in ((stride_h, "stride_h"), (stride_w, "stride_w"),
                                                          (pad_h, "pad_h"), (pad_w, "pad_w"), (dil_h, "dil_h"),
                                                          (dil_w, "dil_w"), (n_weight_grps, "groups"),
                                                          (n_offset_grps, "offset_groups"))]
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, offset_groups = ints
    inputs = [input, weight, offset, bias] + ([mask] if sh._get_const(use_mask, "b", "use_mask") else [])
    return g.op("DeformConv", *inputs, strides_i=[stride_h, stride_w], pads_i=[pad_h, pad_w, pad_h, pad_w],
                dilations_i=[dil_h, dil_w], group_i=groups, offset_group_i=offset_groups)


@functools.lru_cache(maxsize=1)
def onnxruntime_runs_deform_conv() -> tuple[bool, str]:
    """(whether onnxruntime's CPU provider runs ``DeformConv`` of opset 19, why not); (True, "") without onnxruntime."""
    try:
        import numpy as np
        import onnx
        import onnxruntime as ort
    except ImportError:
        return True, ""
    from onnx import TensorProto, helper
    names = ["X", "W", "O", "B", "M"]
    node = helper.make_node("DeformConv", names, ["Y"], pads=[0, 0, 0, 0])
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names]
    graph = helper.make_graph([node], "probe", inputs, [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_DEFORM_OPSET)])
    proto.ir_version = min(proto.ir_version, 9)  # older onnxruntime builds refuse newer IR versions
    try:
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        one = np.ones((1, 1, 1, 1), np.float32)
        session.run(None, {"X": one, "W": one, "O": np.zeros((1, 2, 1, 1), np.float32),
                           "B": np.zeros(1, np.float32), "M": one})
    except Exception as exc:  # NOT_IMPLEMENTED, an unknown op, an opset it does not know: all mean "cannot run"
        return False, f"onnxruntime {ort.__version__}: {one_line(exc)[:160]}"
    del onnx
    return True, ""


def prepare_onnx_export(model: nn.Module, opset: int, out_path: str) -> int:
    """Call before ``torch.onnx.export``; returns the opset to export with (``opset``, or 19 for DCN models).

    For a model with deformable convolutions: registers the ``DeformConv`` rule and checks onnxruntime (if
    installed) runs it. Raises :class:`solov2.deploy.export.ExportError` with one line naming the op otherwise.
    """
    if not has_deform_conv(model):
        return opset
    from solov2.errors import ExportError
    ok, why = onnxruntime_runs_deform_conv()
    if not ok:
        raise ExportError(f"{out_path}: not written: the model has deformable convolutions ({DEFORM_OP} -> ONNX "
                          f"DeformConv, opset {ONNX_DEFORM_OPSET}) and this onnxruntime cannot run them ({why}); "
                          f"upgrade onnxruntime or export --format torchscript")
    import torch.onnx
    torch.onnx.register_custom_op_symbolic(DEFORM_OP, _deform_conv_symbolic, ONNX_DEFORM_OPSET)
    if opset < ONNX_DEFORM_OPSET:
        logging.getLogger("solov2").info("export: deformable convolutions need ONNX opset %d (DeformConv); "
                                         "exporting with opset %d instead of %d", ONNX_DEFORM_OPSET,
                                         ONNX_DEFORM_OPSET, opset)
    return max(opset, ONNX_DEFORM_OPSET)

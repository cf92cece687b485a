"""OpenVINO IR: write our ONNX export as an IR (``.xml`` + ``.bin``) with OpenVINO's own converter, and open one
for :class:`solov2.deploy.runtime.ExportedSOLOv2` in OpenVINO's CPU plugin.

The IR has the ONNX graph's inputs and outputs (:mod:`solov2.deploy.export`) and carries the same metadata in its
``rt_info``: ``solov2`` (the JSON object of the ONNX file's ``metadata_props``), ``class_names``, ``score_thr``,
``mask_thr``. An int8 IR (:mod:`solov2.deploy.quantize`) adds ``quantization`` to the ``solov2`` object (method, the
calibration set and its size); an IR with quantized layers but without it is refused, as its accuracy is unknown.

Precision: OpenVINO's CPU plugin picks bf16 by itself on CPUs with AVX512-BF16 / AMX, which changes results;
:func:`open_ir` sets ``INFERENCE_PRECISION_HINT`` explicitly: ``f32`` for ``"fp32"`` (the PyTorch model's results,
tests/test_openvino.py), ``bf16`` for ``"bf16"``.
"""
from __future__ import annotations

import os
from typing import Any

from solov2.deploy.contract import META_KEY, metadata_props, missing_extra, parse_meta
from solov2.errors import ExportError, one_line

__all__ = ["OPENVINO_PRECISIONS", "onnx_to_ir", "save_ir", "open_ir", "read_ir_meta", "is_quantized"]

OPENVINO_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}  # ours -> INFERENCE_PRECISION_HINT


def require_openvino(path: str, exporting: bool = False):
    reason = missing_extra("openvino", exporting)
    if reason:
        raise ExportError(f"{path}: OpenVINO IR {reason}")
    import openvino
    return openvino


def onnx_to_ir(onnx_path: str):
    """Our ONNX file -> an ``openvino.Model`` (``openvino.convert_model``) with the file's metadata in ``rt_info``."""
    ov = require_openvino(onnx_path, exporting=True)
    import onnx
    props = {p.key: p.value for p in onnx.load(onnx_path, load_external_data=False).metadata_props}
    meta = parse_meta(onnx_path, props.get(META_KEY))
    try:
        model = ov.convert_model(onnx_path)
    except Exception as exc:
        raise ExportError(f"{onnx_path}: OpenVINO cannot convert it ({one_line(exc)})") from None
    set_meta(model, {**meta, "format": "openvino"})
    return model


def set_meta(model, meta: dict[str, Any]) -> None:
    """Write ``meta`` (the ``solov2`` object) into the model's ``rt_info``, with the same keys as an ONNX file's
    ``metadata_props`` (:func:`solov2.deploy.contract.metadata_props`)."""
    for key, value in metadata_props(meta).items():
        model.set_rt_info(value, [key])


def save_ir(model, out_path: str) -> str:
    """Write ``model`` as ``out_path`` (.xml) and its ``.bin``, weights kept in float32 (``save_model`` would
    compress them to fp16 by default, which changes results)."""
    ov = require_openvino(out_path)
    if not out_path.endswith(".xml"):
        raise ExportError(f"{out_path}: an OpenVINO IR is written as a .xml file (and its .bin)")
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    ov.save_model(model, out_path, compress_to_fp16=False)
    return out_path


def is_quantized(model) -> bool:
    """Whether the graph holds quantized layers (NNCF writes them as FakeQuantize operations)."""
    return any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())


def read_ir_meta(path: str, model=None) -> dict[str, Any]:
    """The ``solov2`` metadata of an IR file, checked: ours, this format version, and a quantized graph's
    calibration record present (one-line :class:`ExportError` otherwise)."""
    ov = require_openvino(path)
    if model is None:
        try:
            model = ov.Core().read_model(path)
        except Exception as exc:
            raise ExportError(f"{path}: OpenVINO cannot read it ({one_line(exc)})") from None
    text = model.get_rt_info([META_KEY]).astype(str) if model.has_rt_info([META_KEY]) else None
    meta = parse_meta(path, text)
    if is_quantized(model):
        calibration = (meta.get("quantization") or {}).get("calibration") or {}
        if not (calibration.get("source") and calibration.get("count")):
            raise ExportError(f"{path}: a quantized model without its calibration record in the metadata "
                              f"(quantization.calibration); quantize with `solov2 quantize` to know its accuracy")
    return meta


class OpenVINOSession:
    """A compiled IR behind the runtime session interface of :mod:`solov2.deploy.runtime`."""

    def __init__(self, compiled):
        self._compiled = compiled
        self._request = compiled.create_infer_request()

    def run(self, names: list[str], feeds: dict[str, Any]) -> list[Any]:
        result = self._request.infer(feeds)  # copies of the outputs (share_outputs=False)
        return [result[self._compiled.output(name)] for name in names]


def open_ir(path: str, precision: str = "fp32", threads: int | None = None) -> tuple[OpenVINOSession, dict]:
    """Read and compile an IR for the CPU at ``precision`` (:data:`OPENVINO_PRECISIONS`); ``threads``: the
    plugin's ``INFERENCE_NUM_THREADS`` (None: torch's thread count, so both backends use the same cores).
    Returns ``(session, metadata)``."""
    ov = require_openvino(path)
    if precision not in OPENVINO_PRECISIONS:
        raise ExportError(f"{path}: OpenVINO precision must be one of {', '.join(OPENVINO_PRECISIONS)}, "
                          f"got {precision!r}")
    core = ov.Core()
    try:
        model = core.read_model(path)
    except Exception as exc:
        raise ExportError(f"{path}: OpenVINO cannot read it ({one_line(exc)})") from None
    meta = read_ir_meta(path, model)
    import torch
    config = {"INFERENCE_PRECISION_HINT": OPENVINO_PRECISIONS[precision],
              "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads()),
              "PERFORMANCE_HINT": "LATENCY"}
    try:
        compiled = core.compile_model(model, "CPU", config)
    except Exception as exc:
        raise ExportError(f"{path}: OpenVINO cannot compile it for the CPU ({one_line(exc)})") from None
    return OpenVINOSession(compiled), meta

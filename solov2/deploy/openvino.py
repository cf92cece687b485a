"""OpenVINO IR: write our ONNX export as an IR (``.xml`` + ``.bin``) with OpenVINO's own converter, and open one
for :class:`solov2.deploy.runtime.ExportedSOLOv2` in OpenVINO's CPU plugin.

The IR has the ONNX graph's inputs and outputs (:mod:`solov2.deploy.export`) and carries the same metadata in its
``rt_info``: ``solov2`` (the JSON object of the ONNX file's ``metadata_props``), ``class_names``, ``score_thr``,
``mask_thr``. An int8 IR (:mod:`solov2.deploy.quantize`) adds ``quantization`` to the ``solov2`` object (method, the
calibration set and its size); an IR with quantized layers but without it is refused, as its accuracy is unknown.

Precision: OpenVINO's CPU plugin picks bf16 by itself on CPUs with AVX512-BF16 / AMX, which changes results;
:func:`open_ir` sets ``INFERENCE_PRECISION_HINT`` explicitly: ``f32`` for ``"fp32"`` (the PyTorch model's results,
tests/test_openvino.py), ``bf16`` for ``"bf16"``.

One ``openvino.Core`` per process (:func:`shared_core`): each ``Core`` loads the CPU plugin and starts its own
pool of TBB worker threads, and creating one per opened file left them to be torn down by Python's garbage
collector at an arbitrary later point. A compiled model belongs to the process that compiled it: OpenVINO's
worker threads do not exist in a ``fork``ed child, so :meth:`OpenVINOSession.run` refuses to run there (one line,
instead of a hang or a crash); open the file in the child (multiprocessing's ``spawn`` start method, or after the
fork). :meth:`OpenVINOSession.close` (and ``ExportedSOLOv2.close``) release a compiled model at a known point.
"""
from __future__ import annotations

import ctypes
import os
import sys
import threading
from typing import Any

from solov2.deploy.contract import META_KEY, metadata_props, missing_extra, parse_meta
from solov2.errors import ExportError, one_line

__all__ = ["OPENVINO_PRECISIONS", "onnx_to_ir", "save_ir", "open_ir", "read_ir_meta", "is_quantized", "shared_core",
           "OpenVINOSession", "repair_signal_stack"]

OPENVINO_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}  # ours -> INFERENCE_PRECISION_HINT

_core_lock = threading.Lock()
_core: Any = None
_core_pid: int | None = None
# What a forked child inherited (Cores, compiled models): kept alive there, as destroying one would wait on worker
# threads that do not exist in the child.
_inherited: list = []


class _SignalStack(ctypes.Structure):  # Linux's stack_t
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


_SS_DISABLE = 2
_own_signal_stack: Any = None  # allocated once, never freed


def repair_signal_stack() -> bool:
    """Give the calling thread a live alternate signal stack again where OpenVINO left it on freed memory; returns
    whether it did (Linux; elsewhere a no-op).

    Each ``openvino.Core``'s CPU plugin installs an alternate signal stack of its own on the thread that compiles
    with it and, when the plugin is destroyed, puts back the one it found. Two Cores whose lifetimes overlap and
    that are freed in the order they were made (NNCF's temporary ones during ``solov2 quantize``) leave the thread
    on the first plugin's stack, already freed. Python installs its signal handlers with ``SA_ONSTACK``, so the
    next signal with a Python handler (SIGCHLD when a subprocess or DataLoader worker ends, SIGINT) cannot be
    delivered and the kernel kills the process with SIGSEGV, without a traceback (faulthandler needs that stack
    too). Measured with OpenVINO 2026.4: tests/test_openvino.py reproduces it."""
    global _own_signal_stack
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    current = _SignalStack()
    if libc.sigaltstack(None, ctypes.byref(current)) != 0 or current.ss_flags & _SS_DISABLE or not current.ss_sp:
        return False
    if _is_mapped(current.ss_sp):
        return False
    if _own_signal_stack is None:
        _own_signal_stack = ctypes.create_string_buffer(max(int(current.ss_size), 1 << 16))
    ours = _SignalStack(ctypes.addressof(_own_signal_stack), 0, len(_own_signal_stack))
    return libc.sigaltstack(ctypes.byref(ours), None) == 0


def _is_mapped(address: int) -> bool:
    with open("/proc/self/maps") as maps:
        for line in maps:
            start, end = (int(x, 16) for x in line.split(" ", 1)[0].split("-"))
            if start <= address < end:
                return True
    return False


def require_openvino(path: str, exporting: bool = False):
    reason = missing_extra("openvino", exporting)
    if reason:
        raise ExportError(f"{path}: OpenVINO IR {reason}")
    import openvino
    return openvino


def shared_core(path: str = "openvino"):
    """This process's one ``openvino.Core`` (created on first use; a ``fork``ed child gets a new one).
    ``path`` names the file in the error raised when OpenVINO is not installed."""
    global _core, _core_pid
    ov = require_openvino(path)
    with _core_lock:
        if _core is None or _core_pid != os.getpid():
            if _core is not None:
                _inherited.append(_core)
            _core, _core_pid = ov.Core(), os.getpid()
        return _core


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
    if model is None:
        core = shared_core(path)
        try:
            model = core.read_model(path)
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
    """A compiled IR behind the runtime session interface of :mod:`solov2.deploy.runtime`, usable in the process
    that compiled it; :meth:`close` releases it."""

    def __init__(self, compiled, path: str = "the OpenVINO model"):
        self.path = path
        self._pid = os.getpid()
        self._compiled = compiled
        self._request = compiled.create_infer_request()

    def run(self, names: list[str], feeds: dict[str, Any]) -> list[Any]:
        if self._compiled is None:
            raise ExportError(f"{self.path}: this OpenVINO model was closed")
        if os.getpid() != self._pid:
            raise ExportError(f"{self.path}: an OpenVINO model compiled in process {self._pid} cannot run in the "
                              f"forked process {os.getpid()}; open it in that process (or start it with 'spawn')")
        result = self._request.infer(feeds)  # copies of the outputs (share_outputs=False)
        return [result[self._compiled.output(name)] for name in names]

    def close(self) -> None:
        """Release the infer request and the compiled model now (idempotent); in a forked child they are only
        dropped, never destroyed, for the reason of :func:`shared_core`."""
        request, compiled = self._request, self._compiled
        self._request = self._compiled = None
        if compiled is not None and os.getpid() != self._pid:
            _inherited.append((request, compiled))


def open_ir(path: str, precision: str = "fp32", threads: int | None = None) -> tuple[OpenVINOSession, dict]:
    """Read and compile an IR for the CPU at ``precision`` (:data:`OPENVINO_PRECISIONS`); ``threads``: the
    plugin's ``INFERENCE_NUM_THREADS`` (None: torch's thread count, so both backends use the same cores).
    Returns ``(session, metadata)``."""
    require_openvino(path)
    if precision not in OPENVINO_PRECISIONS:
        raise ExportError(f"{path}: OpenVINO precision must be one of {', '.join(OPENVINO_PRECISIONS)}, "
                          f"got {precision!r}")
    core = shared_core(path)
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
    return OpenVINOSession(compiled, path), meta

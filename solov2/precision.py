"""Network precision: one autocast helper for training, evaluation, prediction and benchmarks."""
from __future__ import annotations

import os

import torch

__all__ = ["PRECISIONS", "PRECISION_CHOICES", "autocast_dtype", "amp_dtype", "precision_autocast",
           "cpu_has_native_bf16", "default_amp", "resolve_precision"]

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# What inference (Predictor, predict, eval, benchmark) accepts: a precision, or "auto" (resolve_precision).
PRECISION_CHOICES = ("auto", *PRECISIONS)


def resolve_precision(precision: str, device: str | torch.device, backend: str = "torch") -> str:
    """Inference's precision: ``precision`` itself, or for ``"auto"`` (the default of the Predictor, predict, eval
    and benchmark) ``"bf16"`` with the torch backend on CPUs that compute bf16 natively (AVX512-BF16 or AMX) and
    ``"fp32"`` elsewhere (other CPUs, where emulated bf16 is slower; CUDA; the exported-graph backends).

    bf16 is the default only there because it passed the issue's rule on this project's CPU: mask AP within 0.005
    of fp32 on the demo model's val set and on held-out shapes sets (docs/history.md, "Default precision").
    ``SOLOV2_PRECISION=fp32`` (or ``bf16``) in the environment sets what ``"auto"`` means on a machine (the tests
    set fp32); ``precision="fp32"`` / ``--precision fp32`` is the switch for one run."""
    if precision != "auto":
        return precision
    forced = os.environ.get("SOLOV2_PRECISION")
    if forced in PRECISIONS:
        return forced
    if backend == "torch" and torch.device(device).type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


def autocast_dtype(precision: str, device: str | torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` ("fp32", "bf16", "fp16", or "auto": :func:`resolve_precision`) on
    ``device``; None for fp32."""
    precision = resolve_precision(precision, device)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {precision!r}")
    if precision == "fp16" and torch.device(device).type != "cuda":
        raise ValueError("precision fp16 needs a CUDA device; on CPU use bf16")
    return PRECISIONS[precision]


def amp_dtype(device: str | torch.device) -> torch.dtype:
    """Training's mixed precision (``--amp``): fp16 with loss scaling on GPUs, bfloat16 (no scaling) on CPUs."""
    return torch.float16 if torch.device(device).type == "cuda" else torch.bfloat16


def precision_autocast(dtype: torch.dtype | None, device: str | torch.device):
    """``torch.autocast`` for ``dtype`` on ``device``; a no-op for None (fp32)."""
    return torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (Linux ``avx512_bf16`` / ``amx_bf16`` flags); elsewhere False,
    since emulated bf16 is slower than fp32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def default_amp(device: str | torch.device) -> bool:
    """Training's precision when neither ``--amp`` nor ``--no-amp`` is given: bf16 autocast on CPUs that compute
    bf16 natively (a step takes ~0.6x the fp32 time there at the same mask AP, docs/history.md), fp32 on other
    CPUs and on GPUs (as the official code trains). ``SOLOV2_AMP=0`` (or ``1``) in the environment sets the
    default on a machine, for every command and the processes it starts (the tests use it)."""
    forced = os.environ.get("SOLOV2_AMP")
    if forced in ("0", "1"):
        return forced == "1"
    return torch.device(device).type == "cpu" and cpu_has_native_bf16()

"""Network precision: one autocast helper for training, evaluation, prediction and benchmarks."""
from __future__ import annotations

import os

import torch

__all__ = ["PRECISIONS", "autocast_dtype", "amp_dtype", "precision_autocast", "cpu_has_native_bf16", "default_amp"]

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_dtype(precision: str, device: str | torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` ("fp32", "bf16" or "fp16") on ``device``; None for fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
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
    bf16 natively (a step takes ~0.6x the fp32 time there at the same mask AP, docs/training.md), fp32 on other
    CPUs and on GPUs (as the official code trains). ``SOLOV2_AMP=0`` (or ``1``) in the environment sets the
    default on a machine, for every command and the processes it starts (the tests use it)."""
    forced = os.environ.get("SOLOV2_AMP")
    if forced in ("0", "1"):
        return forced == "1"
    return torch.device(device).type == "cpu" and cpu_has_native_bf16()

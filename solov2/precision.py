"""Network precision: one autocast helper for training, evaluation, prediction and benchmarks."""
from __future__ import annotations

import logging
import os

import torch

__all__ = ["PRECISIONS", "PRECISION_CHOICES", "autocast_dtype", "amp_dtype", "precision_autocast",
           "cpu_has_native_bf16", "default_amp", "resolve_precision", "not_native_warning",
           "warn_if_not_native"]

logger = logging.getLogger("solov2")
_warned: set[str] = set()  # each not-native warning once per process

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
    if precision == "auto":
        forced = os.environ.get("SOLOV2_PRECISION")
        auto = "bf16" if backend == "torch" and torch.device(device).type == "cpu" and cpu_has_native_bf16() else "fp32"
        precision = forced if forced in PRECISIONS else auto
    warn_if_not_native(precision, device, backend)  # every command that runs a network resolves its precision here
    return precision


def warn_if_not_native(precision: str, device: str | torch.device, backend: str = "torch") -> None:
    """Log :func:`not_native_warning` (``solov2`` logger, each line once per process), if there is one."""
    message = not_native_warning(precision, device, backend)
    if message and message not in _warned:
        _warned.add(message)
        logger.warning("warning: %s", message)


def not_native_warning(precision: str, device: str | torch.device, backend: str = "torch") -> str | None:
    """The one line that says ``precision`` is emulated here and slower than fp32 (torch backend: bf16 on a CPU
    without AVX512-BF16 / AMX, or on a GPU before compute capability 8.0), else None.
    :func:`resolve_precision` logs it (``solov2`` logger, once per process), so the Predictor, ``solov2 predict``,
    ``eval`` and ``benchmark`` all say it; ``solov2 train --amp`` on such a CPU says it too. Measured (issue 24):
    ``solov2 eval --precision bf16`` took 25 s against 10-12 s in fp32 on a 2-core AVX2-only EPYC."""
    if precision != "bf16" or backend != "torch":
        return None
    device = torch.device(device)
    if device.type == "cpu" and not cpu_has_native_bf16():
        return "bf16 is emulated on this CPU (no AVX512-BF16/AMX): slower than fp32"
    if (device.type == "cuda" and torch.cuda.is_available()
            and not torch.cuda.is_bf16_supported(including_emulation=False)):
        return f"bf16 is emulated on this GPU ({torch.cuda.get_device_name(device)}, before Ampere): slower than fp32"
    return None


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

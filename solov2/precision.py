"""Network precision: one autocast helper for training, evaluation, prediction and benchmarks."""
from __future__ import annotations

import torch

__all__ = ["PRECISIONS", "autocast_dtype", "amp_dtype", "precision_autocast"]

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

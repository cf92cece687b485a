"""Checkpoints: written atomically, read with ``weights_only=True``, checked against the model.

Layout (a plain dict of tensors and builtins, so ``torch.load(weights_only=True)`` reads it)::

    {"state_dict": model weights (official SOLO key names),
     "meta": {"epoch": int, "iter": int, "classes": [str, ...], "cat_ids": [COCO category id per label, ...],
              "config": the resolved config as a plain dict (solov2.checkpoint.model_config; older: its text)},
     "optimizer": optimizer.state_dict(), "scaler": GradScaler state (optional),
     "rng": [random generator states of each process (``rng.rng_state``), by rank] (optional),
     "ema": {"updates": int, "decay": float, "warmup": float, "raw_state_dict": the trained weights} (optional:
            a run with weight averaging, whose "state_dict" holds the average; ``solov2.engine.ema``)}
"""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from typing import Any

import torch
from torch import nn

from solov2.errors import CheckpointError, one_line


def save_checkpoint(path: str, model: nn.Module, optimizer=None, meta: dict | None = None, scaler=None,
                    rng: list[dict] | None = None, extra: dict | None = None) -> None:
    """Write to a temporary file in the same folder, then rename: a kill never leaves a half-written file.
    ``extra``: more top-level entries (e.g. ``{"ema": ...}``)."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    state = {"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "meta": meta or {}}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    if scaler is not None:
        state["scaler"] = scaler.state_dict()
    if rng is not None:
        state["rng"] = rng
    state.update(extra or {})
    atomic_save(state, path)


def link_checkpoint(source: str, path: str) -> None:
    """Make ``path`` hold the bytes of the checkpoint ``source`` without serializing it again: a hard link
    (a copy where the file system has none) under a temporary name, renamed over ``path``.

    The two names then share one file until either is replaced or removed (``os.replace`` by
    :func:`atomic_save` and ``os.remove`` leave the other name intact).
    """
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".tmp_{uuid.uuid4().hex}.pth")
    try:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_save(obj: dict, path: str) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".pth", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def read_checkpoint(path: str) -> dict[str, Any]:
    """Load a checkpoint file (ours, or a bare state_dict) as ``{"state_dict": ..., "meta": ...}``."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint ({one_line(exc)})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a checkpoint (got {type(ckpt).__name__})")
    if "state_dict" not in ckpt:
        if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            ckpt = {"state_dict": ckpt}
        else:
            raise CheckpointError(f"{path}: no 'state_dict' in checkpoint")
    ckpt.setdefault("meta", {})
    return ckpt


def load_weights(model: nn.Module, path_or_ckpt: str | dict, strict: bool = True, name: str | None = None
                 ) -> dict[str, Any]:
    """Load weights into ``model``; a mismatch raises :class:`CheckpointError` listing the keys.

    ``name`` is what error messages call an already read checkpoint dict (default: its path, or "checkpoint").
    Returns the checkpoint dict (for its ``meta`` and optimizer state).
    """
    ckpt = read_checkpoint(path_or_ckpt) if isinstance(path_or_ckpt, str) else path_or_ckpt
    name = path_or_ckpt if isinstance(path_or_ckpt, str) else (name or "checkpoint")
    model = getattr(model, "module", model)
    state = ckpt["state_dict"]
    if any(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shape = sorted(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                   for k in set(own) & set(state) if state[k].shape != own[k].shape)
    if shape or (strict and (missing or unexpected)):
        parts = []
        for label, keys in (("wrong shape", shape), ("missing", missing), ("unexpected", unexpected)):
            if keys:
                more = f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""
                parts.append(f"{label}: {', '.join(keys[:5])}{more}")
        raise CheckpointError(f"{name}: does not match the model built from the config; " + "; ".join(parts))
    model.load_state_dict(state, strict=strict)
    return ckpt

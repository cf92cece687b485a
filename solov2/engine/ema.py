"""Exponential moving average of the weights (config: top-level ``ema=dict(decay=0.9998, warmup=2000)``).

After every optimizer step the averaged parameters move towards the trained ones:
``avg = d * avg + (1 - d) * raw`` with ``d = decay * (1 - exp(-updates / warmup))`` (the warm-up form of
YOLOv5 and MMDetection's ``ExpMomentumEMA``; ``warmup=0`` uses ``decay`` from the first update). Early on
``d`` is small, so the average follows the raw weights instead of remembering the random initialization.
The buffers (BatchNorm running statistics) are not averaged: the average shares the raw model's buffer
tensors, so it always has the current ones (as MMEngine's averaged models with ``update_buffers=False``).

The trainer evaluates and saves the average: a checkpoint's ``state_dict`` holds the averaged weights (what
``solov2 predict`` and ``eval`` load), and its ``ema`` entry the raw weights and the number of updates, so that
a resumed run continues both exactly (:func:`restore`).
"""
from __future__ import annotations

import copy
import logging
import math

import torch
from torch import nn

from solov2.config import check_keys
from solov2.errors import CheckpointError, ConfigError

__all__ = ["ModelEMA", "build_ema", "restore"]

logger = logging.getLogger("solov2")


class ModelEMA:
    """The averaged copy of ``model``, :attr:`module` (an ``nn.Module`` in eval mode, no gradients).

    Args:
        model: the model being trained (not a DDP wrapper); its current weights start the average.
        decay: the decay once warmed up, in [0, 1); 0 makes the average equal the raw weights.
        warmup: updates over which the decay rises (``1 - exp(-updates / warmup)``); 0: no warm-up.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9998, warmup: float = 2000):
        if not 0.0 <= float(decay) < 1.0:
            raise ConfigError(f"ema.decay: expected a number in [0, 1), got {decay!r}")
        if float(warmup) < 0:
            raise ConfigError(f"ema.warmup: expected updates >= 0, got {warmup!r}")
        self.decay, self.warmup, self.updates = float(decay), float(warmup), 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self._share_buffers(model)

    def _share_buffers(self, model: nn.Module) -> None:
        raw = dict(model.named_buffers())
        for name, module in self.module.named_modules():
            for key in list(module._buffers):
                if module._buffers[key] is not None:
                    module._buffers[key] = raw[f"{name}.{key}" if name else key]

    def decay_at(self, updates: int) -> float:
        """The decay of update number ``updates`` (1 for the first)."""
        if self.warmup == 0:
            return self.decay
        return self.decay * (1.0 - math.exp(-updates / self.warmup))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One step of the average towards ``model``'s parameters (call after each optimizer step)."""
        self.updates += 1
        d = self.decay_at(self.updates)
        avg = [p for p in self.module.parameters()]
        raw = [p.detach() for p in model.parameters()]
        if d == 0.0:
            torch._foreach_copy_(avg, raw)
        else:
            torch._foreach_lerp_(avg, raw, 1.0 - d)

    def state_dict(self, model: nn.Module) -> dict:
        """What a checkpoint's ``ema`` entry holds: ``{"updates", "decay", "warmup", "raw_state_dict"}`` (the
        raw ``model``'s weights; the average itself is the checkpoint's ``state_dict``)."""
        return {"updates": self.updates, "decay": self.decay, "warmup": self.warmup,
                "raw_state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}


def build_ema(cfg: dict | None, model: nn.Module) -> ModelEMA | None:
    """A :class:`ModelEMA` of ``model`` from the config's ``ema`` section, or None where it is absent/None."""
    if not cfg:
        return None
    check_keys(ModelEMA, cfg, "ema", skip=("model",))
    return ModelEMA(model, **cfg)


def restore(ckpt: dict, model: nn.Module, ema: ModelEMA | None, path: str = "checkpoint") -> None:
    """After ``load_weights(model, ckpt)`` put ``model`` back to the raw weights and ``ema`` to the average.

    A checkpoint of a run with EMA: ``model`` gets ``ckpt["ema"]["raw_state_dict"]`` and ``ema`` (if any) the
    averaged ``state_dict`` and the update count. One without: the average starts from the loaded weights.
    """
    saved = ckpt.get("ema")
    if saved is None:
        if ema is not None:
            logger.info("%s holds no weight average (trained without ema): the average starts from its weights", path)
            ema.module.load_state_dict(model.state_dict())
        return
    raw = saved.get("raw_state_dict")
    if raw is None:
        raise CheckpointError(f"{path}: 'ema' entry without 'raw_state_dict'")
    if ema is not None:
        ema.module.load_state_dict(model.state_dict())  # the average, which load_weights put into model
        ema.updates = int(saved.get("updates", 0))
    else:
        logger.info("%s was trained with ema; training continues from its raw weights without averaging", path)
    model.load_state_dict(raw)

"""Learning-rate schedules: linear warmup over iterations, then step decay by epoch (mmdet 1.x semantics)
or cosine decay over iterations.

The lr is a pure function of (epoch, global iteration), so a resumed run lands on the same value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class StepSchedule:
    base_lr: float
    step: list[int] = field(default_factory=list)  # epochs after which lr *= gamma
    gamma: float = 0.1
    warmup: str | None = "linear"
    warmup_iters: int = 500
    warmup_ratio: float = 1.0 / 3

    def lr_at(self, epoch: int, it: int) -> float:
        lr = self.base_lr * self.gamma ** sum(epoch >= s for s in self.step)
        if self.warmup == "linear" and it < self.warmup_iters:
            lr *= self.warmup_ratio + (1 - self.warmup_ratio) * it / self.warmup_iters
        elif self.warmup == "constant" and it < self.warmup_iters:
            lr *= self.warmup_ratio
        return lr


@dataclass
class CosineSchedule(StepSchedule):
    """Warmup as :class:`StepSchedule`, then ``lr`` follows half a cosine from ``base_lr`` at iteration 0 to
    ``base_lr * min_lr_ratio`` at ``total_iters``; short schedules (the CPU demo) end better this way."""

    total_iters: int = 1
    min_lr_ratio: float = 0.01

    def lr_at(self, epoch: int, it: int) -> float:
        progress = min(it / max(self.total_iters, 1), 1.0)
        lr = self.base_lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
        if self.warmup == "linear" and it < self.warmup_iters:
            lr *= self.warmup_ratio + (1 - self.warmup_ratio) * it / self.warmup_iters
        elif self.warmup == "constant" and it < self.warmup_iters:
            lr *= self.warmup_ratio
        return lr


def build_schedule(base_lr: float, lr_config: dict, total_iters: int | None = None) -> StepSchedule:
    """``lr_config`` as in the configs: ``policy='step'`` (with ``step=[epochs]``, ``gamma``) or ``'cosine'``
    (with ``min_lr_ratio``; needs ``total_iters``), plus ``warmup``, ``warmup_iters``, ``warmup_ratio``."""
    cfg = dict(lr_config)
    policy = cfg.pop("policy", "step")
    if policy == "cosine":
        known = {"min_lr_ratio", "warmup", "warmup_iters", "warmup_ratio"}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ValueError(f"lr_config: unknown key(s) {unknown} for policy 'cosine'; allowed: {sorted(known)}")
        return CosineSchedule(base_lr=base_lr, total_iters=total_iters or 1, **cfg)
    if policy != "step":
        raise ValueError(f"lr_config.policy: 'step' or 'cosine', got {policy!r}")
    step = cfg.pop("step", [])
    step = [step] if isinstance(step, int) else list(step)
    known = {"gamma", "warmup", "warmup_iters", "warmup_ratio"}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ValueError(f"lr_config: unknown key(s) {unknown}; allowed: policy, step, {', '.join(sorted(known))}")
    return StepSchedule(base_lr=base_lr, step=step, **cfg)


def scaled_lr(lr: float, auto_scale_lr: dict | None, batch_size: int) -> float:
    """The linear scaling rule: ``lr`` is for ``auto_scale_lr.base_batch_size`` images per step; the run
    uses ``batch_size`` (images per GPU x processes x accumulation). Disabled or absent: ``lr`` as it is."""
    if not auto_scale_lr or not auto_scale_lr.get("enable", True):
        return lr
    return lr * batch_size / auto_scale_lr["base_batch_size"]

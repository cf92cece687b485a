"""Learning-rate schedule: linear warmup over iterations, then step decay by epoch (mmdet 1.x semantics).

The lr is a pure function of (epoch, global iteration), so a resumed run lands on the same value.
"""
from __future__ import annotations

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


def build_schedule(base_lr: float, lr_config: dict) -> StepSchedule:
    cfg = dict(lr_config)
    policy = cfg.pop("policy", "step")
    if policy != "step":
        raise ValueError(f"lr_config.policy: only 'step' is supported, got {policy!r}")
    step = cfg.pop("step", [])
    step = [step] if isinstance(step, int) else list(step)
    known = {"gamma", "warmup", "warmup_iters", "warmup_ratio"}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ValueError(f"lr_config: unknown key(s) {unknown}; allowed: policy, step, {', '.join(sorted(known))}")
    return StepSchedule(base_lr=base_lr, step=step, **cfg)

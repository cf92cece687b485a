"""Learning-rate schedules: linear warmup over iterations, then step decay by epoch (mmdet 1.x semantics)
or cosine decay over iterations; and the checkpoint interval.

The lr is a pure function of (epoch, global iteration), so a resumed run lands on the same value.

Lengths that fit the run. A config written for one data set (500 warm-up iterations, decay after epoch 27,
a checkpoint every epoch) does not fit a run of a few hundred iterations, or of thousands of short epochs.
Where a config asks, these lengths are fractions of the run instead, a float strictly between 0 and 1
(whole numbers keep their meaning)::

    lr_config = dict(policy='step', warmup='linear', warmup_iters=0.05,  # 5% of the run's iterations
                     warmup_ratio=0.1, step=[0.75, 0.9])                # lr *= gamma at 75% and at 90% of it
    checkpoint_config = dict(interval=0.1,          # epoch_N.pth every ceil(0.1 x total_epochs) epochs: <= 10
                             interval_minutes=30)    # and latest.pth every 30 minutes of training

The run is ``total_epochs x iterations per epoch`` (the length the cosine policy decays over). A fractional
warm-up is ``round(f x run)`` iterations; a fractional decay step happens at iteration ``round(f x run)``
(mid-epoch where it falls there; whole-number steps stay epochs). :func:`fit_problems` says, in one line, where
a configured length does not fit the run (warm-up longer than the run or than half of it, a decay at or
after its end); the trainer logs it at the start.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from solov2.errors import ConfigError


@dataclass
class StepSchedule:
    base_lr: float
    step: list[int] = field(default_factory=list)  # epochs after which lr *= gamma
    gamma: float = 0.1
    warmup: str | None = "linear"
    warmup_iters: int = 500
    warmup_ratio: float = 1.0 / 3
    step_iters: list[int] = field(default_factory=list)  # iterations from which lr *= gamma (fractional steps)

    def lr_at(self, epoch: int, it: int) -> float:
        decays = sum(epoch >= s for s in self.step) + sum(it >= s for s in self.step_iters)
        lr = self.base_lr * self.gamma ** decays
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
    (with ``min_lr_ratio``; needs ``total_iters``), plus ``warmup``, ``warmup_iters``, ``warmup_ratio``.
    ``warmup_iters`` and the ``step`` entries may be fractions of the run, ``total_iters`` (module docstring)."""
    cfg = dict(lr_config)
    policy = cfg.pop("policy", "step")
    if "warmup_iters" in cfg:
        cfg["warmup_iters"] = _iterations(cfg["warmup_iters"], total_iters, "lr_config.warmup_iters")
    if policy == "cosine":
        known = {"min_lr_ratio", "warmup", "warmup_iters", "warmup_ratio"}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ValueError(f"lr_config: unknown key(s) {unknown} for policy 'cosine'; allowed: {sorted(known)}")
        return CosineSchedule(base_lr=base_lr, total_iters=total_iters or 1, **cfg)
    if policy != "step":
        raise ValueError(f"lr_config.policy: 'step' or 'cosine', got {policy!r}")
    step = cfg.pop("step", [])
    step = [step] if isinstance(step, (int, float)) else list(step)
    known = {"gamma", "warmup", "warmup_iters", "warmup_ratio"}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ValueError(f"lr_config: unknown key(s) {unknown}; allowed: policy, step, {', '.join(sorted(known))}")
    epochs = [int(s) for s in step if not _is_fraction(s)]
    for s in step:
        if not _is_fraction(s) and (s != int(s) or s < 0):
            raise ConfigError(f"lr_config.step: {s!r} is neither a whole epoch nor a fraction of the run (0 < f < 1)")
    iters = [_iterations(s, total_iters, "lr_config.step") for s in step if _is_fraction(s)]
    return StepSchedule(base_lr=base_lr, step=epochs, step_iters=iters, **cfg)


def _is_fraction(value) -> bool:
    return isinstance(value, float) and 0.0 < value < 1.0


def _iterations(value, total_iters: int | None, key: str) -> int:
    """A length in iterations: a whole number as it is, a fraction of the run (0 < f < 1) of ``total_iters``."""
    if _is_fraction(value):
        if not total_iters:
            raise ConfigError(f"{key}={value!r} is a fraction of the run, but the run's length is not known here")
        return int(round(value * total_iters))
    if value != int(value) or value < 0:
        raise ConfigError(f"{key}: {value!r} is neither a whole number of iterations nor a fraction of the run "
                          f"(0 < f < 1)")
    return int(value)


def fit_problems(schedule: StepSchedule, run_iters: int, iters_per_epoch: int) -> str | None:
    """Where ``schedule``'s configured lengths do not fit a run of ``run_iters`` iterations of
    ``iters_per_epoch`` each, as one line (None where they fit): a warm-up longer than the run (the lr never
    reaches its value) or than half of it, a decay step at or after the run's end (it never applies)."""
    problems = []
    warm = schedule.warmup_iters if schedule.warmup else 0
    if warm >= run_iters:
        last = max(run_iters - 1, 0)  # the warm-up factor at the run's last iteration (base_lr may be 0)
        peak = (schedule.warmup_ratio + (1 - schedule.warmup_ratio) * last / warm if schedule.warmup == "linear"
                else schedule.warmup_ratio)
        problems.append(f"the warm-up (lr_config.warmup_iters = {warm} iterations) is longer than the run "
                        f"({run_iters} iterations): the lr peaks at {peak:.0%} of its value")
    elif warm > run_iters / 2:
        problems.append(f"the warm-up (lr_config.warmup_iters = {warm} iterations) takes more than half of the run "
                        f"({run_iters} iterations)")
    late = [f"epoch {s}" for s in schedule.step if s * iters_per_epoch >= run_iters]
    late += [f"iteration {s}" for s in schedule.step_iters if s >= run_iters]
    if late:
        problems.append(f"the lr decay at {', '.join(late)} (lr_config.step) is at or after the run's end "
                        f"({run_iters} iterations, {math.ceil(run_iters / max(iters_per_epoch, 1))} epochs): "
                        f"it never applies")
    if not problems:
        return None
    return ("schedule does not fit the run: " + "; ".join(problems)
            + " (give lengths as fractions of the run, e.g. lr_config.warmup_iters=0.05 step=[0.75], "
              "see lr_config in docs/configuration.md)")


def checkpoint_interval(interval, total_epochs: int) -> int:
    """``checkpoint_config.interval`` -> epochs between ``epoch_N.pth`` files: a whole number is epochs (0: none),
    a fraction of the run (0 < f < 1) ``ceil(f x total_epochs)`` epochs, so at most ``1 / f`` files a run."""
    if _is_fraction(interval):
        return max(1, math.ceil(interval * total_epochs))
    if interval != int(interval) or interval < 0:
        raise ConfigError(f"checkpoint_config.interval: {interval!r} is neither a whole number of epochs nor a "
                          f"fraction of the run (0 < f < 1)")
    return int(interval)


def scaled_lr(lr: float, auto_scale_lr: dict | None, batch_size: int) -> float:
    """The linear scaling rule: ``lr`` is for ``auto_scale_lr.base_batch_size`` images per step; the run
    uses ``batch_size`` (images per GPU x processes x accumulation). Disabled or absent: ``lr`` as it is."""
    if not auto_scale_lr or not auto_scale_lr.get("enable", True):
        return lr
    return lr * batch_size / auto_scale_lr["base_batch_size"]

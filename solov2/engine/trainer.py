"""The training loop: SGD with warmup and step decay, AMP, gradient clipping and accumulation,
atomic checkpoints, exact resume, TensorBoard, evaluation, and DistributedDataParallel."""
from __future__ import annotations

import inspect
import json
import logging
import math
import os
import random
import time
from contextlib import nullcontext

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..checkpoint_config import checkpoint_meta, resolve_classes
from ..config import Config, ConfigError
from ..models import build_model
from . import distributed as du
from .checkpoint import load_weights, read_checkpoint, save_checkpoint
from .evaluate import evaluate, inference_on_dataset
from .sampler import TrainSampler
from .schedule import build_schedule

logger = logging.getLogger("solov2")


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message says where and why."""


def set_seed(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def build_optimizer(model: nn.Module, cfg: dict) -> torch.optim.Optimizer:
    cfg = dict(cfg)
    kind = cfg.pop("type", "SGD")
    optimizers = {"SGD": torch.optim.SGD, "AdamW": torch.optim.AdamW}
    if kind not in optimizers:
        raise ConfigError(f"optimizer.type: unknown optimizer {kind!r} (expected one of {sorted(optimizers)})")
    allowed = set(inspect.signature(optimizers[kind].__init__).parameters) - {"self", "params"}
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise ConfigError(f"optimizer: unknown key(s) {unknown} for {kind}; allowed: {sorted(allowed)}")
    return optimizers[kind]([p for p in model.parameters() if p.requires_grad], **cfg)


def _build_train_loader(cfg: Config, seed: int):
    from ..data import build_dataset, collate
    dataset = build_dataset(cfg.data.train, {"skip_bad_images": cfg.data.get("skip_bad_images", False)})
    sampler = TrainSampler(len(dataset), shuffle=True, seed=seed, rank=du.get_rank(),
                           world_size=du.get_world_size())
    loader = DataLoader(dataset, batch_size=cfg.data.imgs_per_gpu, sampler=sampler,
                        num_workers=cfg.data.workers_per_gpu, collate_fn=collate,
                        persistent_workers=False, pin_memory=False)
    return dataset, sampler, loader


def _autocast(device: str, amp: bool):
    if not amp:
        return nullcontext()
    # fp16 with loss scaling on GPUs; bfloat16 (no scaling needed) on CPUs.
    return torch.autocast(device, dtype=torch.float16 if device == "cuda" else torch.bfloat16)


class Trainer:
    """Runs ``cfg``'s schedule in ``work_dir``; one instance per process.

    Checkpoints: ``epoch_N.pth`` every ``checkpoint_config.interval`` epochs and ``latest.pth`` (also
    every ``checkpoint_config.latest_iters`` iterations, if set), written only by rank 0.
    """

    def __init__(self, cfg: Config, work_dir: str, device: str = "cpu", amp: bool = False,
                 resume: str | None = None, seed: int = 0, deterministic: bool = False):
        self.cfg, self.work_dir, self.device, self.amp = cfg, work_dir, device, amp
        self.rank, self.world = du.get_rank(), du.get_world_size()
        set_seed(seed + self.rank, deterministic)
        self.dataset, self.sampler, self.loader = _build_train_loader(cfg, seed)
        # The training data decides the classes (cfg.model.bbox_head.num_classes is set in place).
        self.classes, self.cat_ids = resolve_classes(cfg, self.dataset)
        model = build_model(cfg).to(device)
        if cfg.get("sync_bn") and self.world > 1:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model
        self.optimizer = build_optimizer(model, cfg.optimizer)
        self.schedule = build_schedule(cfg.optimizer.lr, cfg.get("lr_config", {}))
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp and device == "cuda")
        self.accumulate = int(cfg.get("accumulate_steps", 1) or 1)
        self.iters_per_epoch = math.ceil(len(self.loader) / self.accumulate)
        self.total_epochs = int(cfg.total_epochs)
        max_iters = cfg.get("max_iters")
        self.max_iters = min(self.total_epochs * self.iters_per_epoch, max_iters or math.inf)
        self.epoch, self.iter = 0, 0
        self._latest_iter = -1  # iteration that latest.pth holds, so it is not written twice
        if cfg.get("load_from") and not resume:
            load_weights(self.model, cfg.load_from)
        if resume:
            self._resume(resume)
        if self.world > 1:
            ids = [torch.cuda.current_device()] if device == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                                           find_unused_parameters=bool(cfg.get("find_unused_parameters")))
        else:
            self.ddp = model
        self.writer = None
        if self.rank == 0:
            os.makedirs(work_dir, exist_ok=True)
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(os.path.join(work_dir, "tensorboard"))

    # ----------------------------------------------------------------- checkpoints
    def _resume(self, path: str) -> None:
        ckpt = read_checkpoint(path)
        load_weights(self.model, ckpt)
        if "optimizer" in ckpt:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        if "scaler" in ckpt and self.scaler.is_enabled():
            self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch, self.iter = int(ckpt["meta"].get("epoch", 0)), int(ckpt["meta"].get("iter", 0))
        if self.rank == 0:
            logger.info("resumed from %s at epoch %d, iteration %d", path, self.epoch, self.iter)

    def save(self, name: str) -> None:
        if self.rank != 0 or (name == "latest.pth" and self._latest_iter == self.iter):
            return
        self._latest_iter = self.iter
        meta = {"epoch": self.epoch, "iter": self.iter, **checkpoint_meta(self.cfg, self.classes, self.cat_ids)}
        path = os.path.join(self.work_dir, name)
        save_checkpoint(path, self.model, self.optimizer, meta, self.scaler if self.scaler.is_enabled() else None)
        if name != "latest.pth":
            save_checkpoint(os.path.join(self.work_dir, "latest.pth"), self.model, self.optimizer, meta,
                            self.scaler if self.scaler.is_enabled() else None)
            self._remove_old_epoch_checkpoints()

    def _remove_old_epoch_checkpoints(self) -> None:
        """Keep the newest ``checkpoint_config.max_keep_ckpts`` ``epoch_N.pth`` files (all if < 1)."""
        keep = self.cfg.get("checkpoint_config", {}).get("max_keep_ckpts", -1)
        if keep is None or keep < 1:
            return
        epochs = sorted(int(f[len("epoch_"):-len(".pth")]) for f in os.listdir(self.work_dir)
                        if f.startswith("epoch_") and f.endswith(".pth") and f[6:-4].isdigit())
        for epoch in epochs[:-keep]:
            os.remove(os.path.join(self.work_dir, f"epoch_{epoch}.pth"))

    # ----------------------------------------------------------------- loop
    def run(self) -> dict:
        ckpt_cfg = self.cfg.get("checkpoint_config", {})
        eval_cfg = self.cfg.get("evaluation", {}) or {}
        metrics = {}
        bar = tqdm(total=self.max_iters, initial=self.iter, desc="train", disable=self.rank != 0,
                   dynamic_ncols=True)
        self.start_time, self.start_iter = time.time(), self.iter
        while self.iter < self.max_iters:
            done_in_epoch = self.iter - self.epoch * self.iters_per_epoch
            self.sampler.set_epoch(self.epoch, skip=done_in_epoch * self.accumulate * self.cfg.data.imgs_per_gpu)
            self._train_epoch(bar, ckpt_cfg.get("latest_iters"))
            epoch_finished = self.iter % self.iters_per_epoch == 0
            if epoch_finished:
                self.epoch += 1
            if epoch_finished and self.epoch % ckpt_cfg.get("interval", 1) == 0:
                self.save(f"epoch_{self.epoch}.pth")
            interval = eval_cfg.get("interval", 0)
            if interval > 0 and epoch_finished and self.epoch % interval == 0 and self.iter < self.max_iters:
                metrics = self._evaluate_or_fail(f"at epoch {self.epoch}", bar)
        bar.close()
        self.save("latest.pth")
        if self.world > 1:
            self._check_replicas_in_sync()
        if self.cfg.data.get("val") is not None and eval_cfg.get("interval", 0) >= 0:
            metrics = self._evaluate_or_fail("after training")
        if self.writer:
            self.writer.close()
        return metrics

    def _train_epoch(self, bar, latest_iters: int | None) -> None:
        self.ddp.train()
        log_interval = self.cfg.get("log_config", {}).get("interval", 50)
        for step, (images, targets) in enumerate(self.loader):
            images = [im.to(self.device, non_blocking=True) for im in images]
            targets = [{"masks": t["masks"].to(self.device), "labels": t["labels"].to(self.device)} for t in targets]
            last_of_group = (step + 1) % self.accumulate == 0 or step + 1 == len(self.loader)
            sync = nullcontext() if last_of_group or self.world == 1 else self.ddp.no_sync()
            with sync:
                with _autocast(self.device, self.amp):
                    losses = self.ddp(images, targets)
                loss = sum(losses.values())
                self._check_finite(loss, losses)
                self.scaler.scale(loss / self.accumulate).backward()
            if not last_of_group:
                continue
            self._step()
            self.iter += 1
            logged = du.reduce_mean({**losses, "loss": loss})
            bar.update(1)
            bar.set_postfix(loss=f"{logged['loss']:.3f}", lr=f"{self.optimizer.param_groups[0]['lr']:.2e}")
            if self.rank == 0 and (self.iter % log_interval == 0 or self.iter == self.max_iters):
                self._log(logged)
            if latest_iters and self.iter % latest_iters == 0:
                self.save("latest.pth")
            if self.iter >= self.max_iters:
                break

    def _step(self) -> None:
        lr = self.schedule.lr_at(self.epoch, self.iter)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        clip = self.cfg.get("grad_clip")
        if clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.grad is not None], **clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)

    def _check_finite(self, loss: torch.Tensor, losses: dict) -> None:
        if not torch.isfinite(loss):
            parts = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in losses.items())
            latest = os.path.join(self.work_dir, "latest.pth")
            kept = f"; the last good checkpoint is {latest}" if os.path.exists(latest) else ""
            raise TrainingError(f"iteration {self.iter + 1}: loss is {float(loss.detach())} ({parts}); training stopped{kept}")

    def _log(self, logged: dict) -> None:
        elapsed = time.time() - self.start_time
        done = self.iter - self.start_iter
        eta = elapsed / max(done, 1) * (self.max_iters - self.iter)
        lr = self.optimizer.param_groups[0]["lr"]
        text = " ".join(f"{k}: {v:.4f}" for k, v in logged.items())
        logger.info("epoch %d iter %d/%d lr %.3e %s eta %s", self.epoch + 1, self.iter, self.max_iters, lr, text,
                    time.strftime("%H:%M:%S", time.gmtime(eta)))
        for k, v in logged.items():
            self.writer.add_scalar(f"train/{k}", v, self.iter)
        self.writer.add_scalar("train/lr", lr, self.iter)

    def _check_replicas_in_sync(self) -> None:
        """DDP keeps every process's weights equal; verify it once, cheaply, from one number per process."""
        with torch.no_grad():
            fingerprint = float(sum(p.double().sum() for p in self.model.state_dict().values()
                                    if p.is_floating_point()))
        prints = du.all_gather_object(fingerprint)
        if self.rank == 0:
            logger.info("weights of the %d processes after training: %s", self.world,
                        ", ".join(f"{p:.10e}" for p in prints))
        if len(set(prints)) != 1:
            raise TrainingError(f"the {self.world} processes ended with different weights: {prints}")

    def _evaluate_or_fail(self, when: str, bar=None) -> dict:
        """:meth:`evaluate` with the weights on disk first; a failure is a one-line :class:`TrainingError`
        naming the checkpoint to evaluate later, not a traceback (SOLOV2_DEBUG=1 shows the cause).
        ``bar``: the training progress bar, closed on failure so that it is not redrawn after the error."""
        self.save("latest.pth")  # a no-op where latest.pth already holds this iteration
        try:
            return self.evaluate()
        except Exception as exc:
            if bar is not None:
                bar.close()
            latest = os.path.join(self.work_dir, "latest.pth")
            raise TrainingError(f"evaluation failed {when} ({_reason(exc)}); the trained weights are in {latest}: "
                                f"solov2 eval {latest}") from exc

    def evaluate(self) -> dict:
        from ..data import build_dataset
        eval_cfg = self.cfg.get("evaluation", {}) or {}
        metrics, error = {}, None
        try:
            dataset = build_dataset(self.cfg.data.val)
            encoded = inference_on_dataset(self.model, dataset, self.device)
            if self.rank == 0:
                metrics = evaluate(dataset, encoded, eval_cfg.get("metric", "segm"), self.work_dir,
                                   log=lambda s: logger.info("%s", s))
                with open(os.path.join(self.work_dir, "metrics.json"), "w") as f:
                    json.dump(metrics, f, indent=2)
                for k, v in metrics.items():
                    if isinstance(v, (int, float)):
                        self.writer.add_scalar(f"val/{k}", v, self.iter)
        except Exception as exc:
            if self.world == 1:
                raise
            error = _reason(exc)
        if self.world > 1:
            # Also the barrier: a process whose evaluation failed tells the others instead of leaving them waiting.
            failed = [e for e in du.all_gather_object(error) if e]
            if failed:
                raise TrainingError(failed[0])
        return metrics


def _reason(exc: BaseException) -> str:
    """An exception in one line; the type is named unless it is an error about the input (a ValueError) or ours."""
    text = " ".join(str(exc).split())
    return text if isinstance(exc, (ValueError, TrainingError)) and text else f"{type(exc).__name__}: {text}".rstrip(": ")

"""The training loop: SGD with warmup and step decay, AMP, gradient clipping and accumulation,
atomic checkpoints, exact resume (bit for bit, augmentation included: see ``rng``), a clean stop on Ctrl-C
(see ``interrupt``), TensorBoard, evaluation, and DistributedDataParallel."""
from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from contextlib import contextmanager, nullcontext

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from solov2 import distributed as du
from solov2.checkpoint.io import link_checkpoint, load_weights, read_checkpoint, save_checkpoint
from solov2.checkpoint.model_config import checkpoint_meta, resolve_classes
from solov2.config import Config, check_keys
from solov2.engine import ema as weight_average
from solov2.engine import interrupt
from solov2.engine.monitor import CollapseGuard, branch_grad_norms
from solov2.engine.rng import LOADER, SCALE, SeededSamples, derive_seed, rng_state, set_rng_state
from solov2.engine.sampler import TrainSampler
from solov2.engine.schedule import build_schedule, checkpoint_interval, fit_problems, scaled_lr
from solov2.errors import ConfigError, TrainingError, TrainingInterrupted
from solov2.evaluation.evaluator import evaluate, inference_on_dataset
from solov2.models import build_model, init_backbone_for_training
from solov2.precision import amp_dtype, precision_autocast

logger = logging.getLogger("solov2")


def denormals_flushed() -> bool:
    """Whether this thread flushes float32 denormals to zero (``torch.set_flush_denormal`` has no getter: a
    denormal that does not survive a multiply says so)."""
    return bool(torch.tensor(1e-39, dtype=torch.float32) * 1.0 == 0)  # 1e-39 < 1.2e-38, float32's smallest normal


@contextmanager
def flushing_denormals(enabled: bool = True):
    """``torch.set_flush_denormal(True)`` inside the block (if ``enabled``), the previous setting after it."""
    if not enabled:
        yield
        return
    before = denormals_flushed()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


def set_seed(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def build_optimizer(model: nn.Module, cfg: dict, grad_scaling: bool = False) -> torch.optim.Optimizer:
    """The config's optimizer over the parameters that train; fused (one kernel) where the device has it, except
    SGD under a GradScaler (``grad_scaling``, fp16 AMP on CUDA): fused SGD writes its momentum on the overflow
    steps the scaler skips (a first step skipped leaves the buffer uninitialized), and the weights blew up at
    iteration 5 of the seed config on a GPU with ``--amp`` (tests/test_engine.py)."""
    cfg = dict(cfg)
    kind = cfg.pop("type", "SGD")
    optimizers = {"SGD": torch.optim.SGD, "AdamW": torch.optim.AdamW}
    if kind not in optimizers:
        raise ConfigError(f"optimizer.type: unknown optimizer {kind!r} (expected one of {sorted(optimizers)})")
    check_keys(optimizers[kind], cfg, "optimizer", skip=("params",))
    params = [p for p in model.parameters() if p.requires_grad]
    fusable = _fused_supported(params[0].device) if params else False
    if "fused" not in cfg and "foreach" not in cfg and fusable and not (grad_scaling and kind == "SGD"):
        # One kernel over all parameters instead of ~10 per tensor: the demo's step is ~8 % faster on CPU.
        cfg["fused"] = True
    return optimizers[kind](params, **cfg)


def _fused_supported(device: torch.device) -> bool:
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
    return device.type in _get_fused_kernels_supported_devices()


def resolve_scale_ranges(cfg: Config, train_dataset, log=None) -> None:
    """``model.bbox_head.scale_ranges='auto'``: replace it (in place, so the checkpoint's stored config and
    everything that predicts from it have the ranges) by :func:`solov2.data.report.fit_scale_ranges` of the
    training set's instance sizes at the training scale; the same data gives the same ranges on every process
    and on resume. Anything else is left as it is."""
    head = cfg.model.bbox_head
    if not (isinstance(head.get("scale_ranges"), str) and head.scale_ranges == "auto"):
        return
    from solov2.data.report import fit_scale_ranges, format_scale_ranges, training_scale
    num_levels = len(head.get("num_grids") or (40, 36, 24, 16, 12))  # SOLOv2Head's default grids
    try:
        ranges, report = fit_scale_ranges(train_dataset, training_scale(cfg), num_levels)
    except ValueError as exc:
        raise ConfigError(f"model.bbox_head.scale_ranges='auto': {exc}") from None
    head.scale_ranges = [tuple(r) for r in ranges]
    if log:
        log(f"model.bbox_head.scale_ranges='auto': {format_scale_ranges(ranges)} from the training set's "
            f"{len(report.sizes)} instance sizes (instances per level: {report.instances_per_level})")


def _build_train_loader(cfg: Config, seed: int):
    """The sampler yields ``(index, augmentation seed)`` keys (see ``rng``); the loader's own generator (re-seeded
    every epoch) draws its workers' base seed, so creating a loader iterator leaves torch's global RNG alone."""
    from solov2.data import build_dataset, collate
    from solov2.data.augment import resolve_lsj_size, resolve_scales
    resolve_lsj_size(cfg)
    dataset = build_dataset(cfg.data.train, {"skip_bad_images": cfg.data.get("skip_bad_images", False)})
    resolve_scales(cfg, dataset, log=logger.info if du.get_rank() == 0 else None)
    sampler = TrainSampler(len(dataset), shuffle=True, seed=seed, rank=du.get_rank(),
                           world_size=du.get_world_size(), keyed=True)
    loader = DataLoader(SeededSamples(dataset), batch_size=cfg.data.imgs_per_gpu, sampler=sampler,
                        num_workers=cfg.data.workers_per_gpu, collate_fn=collate,
                        worker_init_fn=interrupt.ignore_sigint, generator=torch.Generator(),
                        persistent_workers=False, pin_memory=False)
    return dataset, sampler, loader


def fingerprint(tensors: dict[str, torch.Tensor]) -> float:
    """The float64 sum of every floating-point tensor, in key order: equal states give equal numbers."""
    return float(sum(tensors[k].detach().double().sum().cpu() for k in sorted(tensors)
                     if tensors[k].is_floating_point()))


class Trainer:
    """Runs ``cfg``'s schedule in ``work_dir``; one instance per process.

    Checkpoints: ``epoch_N.pth`` every ``checkpoint_config.interval`` epochs (or a fraction of the run:
    :func:`~solov2.engine.schedule.checkpoint_interval`) and ``latest.pth`` (also every
    ``checkpoint_config.latest_iters`` iterations and every ``checkpoint_config.interval_minutes`` minutes, if
    set), written only by rank 0. Schedule lengths given as fractions of the run: :mod:`solov2.engine.schedule`.
    """

    def __init__(self, cfg: Config, work_dir: str, device: str = "cpu", amp: bool = False,
                 resume: str | None = None, seed: int = 0, deterministic: bool = False):
        self.cfg, self.work_dir, self.device, self.amp = cfg, work_dir, device, amp
        self.rank, self.world, self.seed = du.get_rank(), du.get_world_size(), seed
        set_seed(seed + self.rank, deterministic)
        self.dataset, self.sampler, self.loader = _build_train_loader(cfg, seed)
        # The training data decides the classes (cfg.model.bbox_head.num_classes is set in place).
        self.classes, self.cat_ids = resolve_classes(cfg, self.dataset)
        resolve_scale_ranges(cfg, self.dataset, log=logger.info if self.rank == 0 else None)
        model = build_model(cfg).to(device)
        if cfg.get("channels_last"):
            # NHWC weights, so that convolutions run oneDNN's channels-last kernels. Per network: on a 2-core AVX2
            # CPU in fp32 a demo step (ResNet-18 light, 8 x 128 px) took 0.90x the time, the seed's light R50
            # (2 x 448x768) 1.23x (benchmarks/mmdet_compare/train_step.py). Checkpoints load either way.
            model = model.to(memory_format=torch.channels_last)
        model = self._batchnorm_across_processes(model)
        # The random train scale: re-seeded from (seed, rank, iteration, micro-batch) before every forward.
        self.scale_rng = random.Random()
        if hasattr(model, "transform"):
            model.transform.rng = self.scale_rng
        self.model = model
        init_backbone_for_training(model, resume, cfg.get("load_from"))  # ImageNet weights, or train every layer
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp and device == "cuda")
        self.optimizer = build_optimizer(model, cfg.optimizer, grad_scaling=self.scaler.is_enabled())
        self.accumulate = int(cfg.get("accumulate_steps", 1) or 1)
        self.iters_per_epoch = math.ceil(len(self.loader) / self.accumulate)
        self.total_epochs = int(cfg.total_epochs)
        max_iters = cfg.get("max_iters")
        self.max_iters = min(self.total_epochs * self.iters_per_epoch, max_iters or math.inf)
        batch = cfg.data.imgs_per_gpu * self.world * self.accumulate
        self.base_lr = scaled_lr(cfg.optimizer.lr, cfg.get("auto_scale_lr"), batch)
        self.schedule = build_schedule(self.base_lr, cfg.get("lr_config", {}),
                                       total_iters=self.total_epochs * self.iters_per_epoch)
        self.guard = CollapseGuard(model.bbox_head.loss_ins_weight, hint=(
            f"restart with a lower learning rate (now {self.base_lr:g} for {batch} images per step), a longer "
            f"warm-up (lr_config.warmup_iters) or ImageNet weights (model.pretrained='torchvision://resnet50'); "
            f"see docs/training.md"))
        self._grad_norms: dict[str, float] = {}
        self.log_interval = cfg.get("log_config", {}).get("interval", 50)
        if self.rank == 0:
            self._log_setup(batch)
            problem = fit_problems(self.schedule, self.max_iters, self.iters_per_epoch)
            if problem:
                logger.warning("%s", problem)
            from solov2.data.report import log_data_report, training_scale
            log_data_report(self.dataset, model.bbox_head.scale_ranges, training_scale(cfg), work_dir,
                            log=logger.info)
        self.epoch, self.iter = 0, 0
        self._latest_iter = -1  # iteration that latest.pth holds, so it is not written twice
        self._last_save_time = time.time()  # checkpoint_config.interval_minutes counts from here
        if cfg.get("load_from") and not resume:
            load_weights(self.model, cfg.load_from)
        self.ema = weight_average.build_ema(cfg.get("ema"), model)  # None unless the config has ema=dict(...)
        rng = self._resume(resume) if resume else None
        if self.world > 1:
            ids = [torch.cuda.current_device()] if device == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                                           find_unused_parameters=bool(cfg.get("find_unused_parameters")))
        else:
            self.ddp = model
        self.writer = None
        if du.is_main_process():
            os.makedirs(work_dir, exist_ok=True)
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(os.path.join(work_dir, "tensorboard"))
        if rng is not None:  # last, so that nothing above draws from the restored generators
            set_rng_state(rng)

    def _log_setup(self, batch: int) -> None:
        scale = self.cfg.get("auto_scale_lr") or {}
        rule = (f" (optimizer.lr {self.cfg.optimizer.lr:g} is for {scale['base_batch_size']}: linear scaling, "
                f"auto_scale_lr)" if scale.get("enable", True) and scale else "")
        precision = ("fp16 autocast" if self.device.startswith("cuda") else "bf16 autocast") if self.amp else "fp32"
        logger.info("%d images per step (%d per process x %d processes x %d accumulated), lr %g%s, %s, %d iterations",
                    batch, self.cfg.data.imgs_per_gpu, self.world, self.accumulate, self.base_lr, rule, precision,
                    self.max_iters)

    def _batchnorm_across_processes(self, model: nn.Module) -> nn.Module:
        """SyncBatchNorm where asked for and possible (CUDA); otherwise each process normalizes with its own
        batches and DDP gives every process rank 0's running statistics (before each forward and at the end
        of training), which rank 0 saves. Says which in one log line."""
        if self.world == 1 or not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            return model
        per_process = ("each process normalizes with its own batches; rank 0's BatchNorm running statistics are "
                       "given to all processes and saved")
        if self.cfg.get("sync_bn") and str(self.device).startswith("cuda"):
            if self.rank == 0:
                logger.info("BatchNorm: SyncBatchNorm over the %d processes (sync_bn=True)", self.world)
            return nn.SyncBatchNorm.convert_sync_batchnorm(model)
        if self.rank == 0:
            if self.cfg.get("sync_bn"):
                logger.warning("sync_bn=True: SyncBatchNorm needs CUDA (NCCL), not %s; instead %s",
                               self.device, per_process)
            else:
                logger.info("BatchNorm: %s (sync_bn=True synchronizes them on CUDA)", per_process)
        return model

    # ----------------------------------------------------------------- checkpoints
    def _resume(self, path: str) -> dict | None:
        """Load weights, optimizer and position; returns this process's saved RNG states (None if absent)."""
        ckpt = read_checkpoint(path)
        load_weights(self.model, ckpt)
        weight_average.restore(ckpt, self.model, self.ema, path)  # raw weights to the model, the average to ema
        if "optimizer" in ckpt:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        if "scaler" in ckpt and self.scaler.is_enabled():
            self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch, self.iter = int(ckpt["meta"].get("epoch", 0)), int(ckpt["meta"].get("iter", 0))
        rng = ckpt.get("rng") or []
        if self.rank == 0:
            logger.info("resumed from %s at epoch %d, iteration %d", path, self.epoch, self.iter)
            if not rng:
                logger.info("%s has no random generator states (an older checkpoint): augmentation randomness "
                            "cannot be restored, so the run will not repeat an uninterrupted one exactly", path)
        return rng[self.rank] if self.rank < len(rng) else None

    def save(self, name: str) -> None:
        """Rank 0 writes ``name``; an epoch checkpoint becomes ``latest.pth`` too, from the same bytes.

        Every process must call it (each one's RNG states are gathered into the checkpoint).
        """
        if name == "latest.pth" and self._latest_iter == self.iter:
            return
        self._latest_iter = self.iter
        self._last_save_time = time.time()
        rng = du.all_gather_object(rng_state())
        if self.rank != 0:
            return
        meta = {"epoch": self.epoch, "iter": self.iter, **checkpoint_meta(self.cfg, self.classes, self.cat_ids)}
        path = os.path.join(self.work_dir, name)
        save_checkpoint(path, self.ema.module if self.ema else self.model, self.optimizer, meta,
                        self.scaler if self.scaler.is_enabled() else None, rng=rng,
                        extra={"ema": self.ema.state_dict(self.model)} if self.ema else None)
        if name != "latest.pth":
            link_checkpoint(path, os.path.join(self.work_dir, "latest.pth"))
            self._remove_old_epoch_checkpoints()

    def _save_time_is_up(self) -> bool:
        """``checkpoint_config.interval_minutes`` have passed since the last save (the same answer on every
        process: they must all call :meth:`save`)."""
        minutes = self.cfg.get("checkpoint_config", {}).get("interval_minutes")
        if not minutes:
            return False
        return du.any_process(time.time() - self._last_save_time >= 60 * minutes, self.device)

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
        """Train to ``max_iters``, then evaluate. Ctrl-C stops after the current iteration: ``latest.pth`` is
        saved and :class:`~solov2.errors.TrainingInterrupted` raised (on every process).

        On CPU, denormals are flushed to zero while it runs: late in training, gradients and AdamW's moments
        underflow to denormals, which x86 handles in a slow path (a trained demo step took 236 ms with them and
        211 ms flushed, docs/history.md). The process's previous setting is restored at the end,
        also on an error or Ctrl-C, so the rest of a user's program keeps its numerics."""
        with interrupt.deferred_sigint(), flushing_denormals(self.device == "cpu"):
            try:
                return self._run()
            finally:
                if self.writer:
                    self.writer.close()

    def _run(self) -> dict:
        ckpt_cfg = self.cfg.get("checkpoint_config", {})
        every = checkpoint_interval(ckpt_cfg.get("interval", 1), self.total_epochs)
        eval_cfg = self.cfg.get("evaluation", {}) or {}
        metrics = {}
        bar = tqdm(total=self.max_iters, initial=self.iter, desc="train", disable=self.rank != 0,
                   dynamic_ncols=True)
        self.start_time, self.start_iter = time.time(), self.iter
        self._last_save_time = self.start_time
        try:
            while self.iter < self.max_iters:
                done_in_epoch = self.iter - self.epoch * self.iters_per_epoch
                self.sampler.set_epoch(self.epoch,
                                       skip=done_in_epoch * self.accumulate * self.cfg.data.imgs_per_gpu)
                self.loader.generator.manual_seed(derive_seed(self.seed, LOADER, self.epoch))
                self._train_epoch(bar, ckpt_cfg.get("latest_iters"))
                epoch_finished = self.iter % self.iters_per_epoch == 0
                if epoch_finished:
                    self.epoch += 1
                if epoch_finished and every and self.epoch % every == 0:
                    self.save(f"epoch_{self.epoch}.pth")
                interval = eval_cfg.get("interval", 0)
                if interval > 0 and epoch_finished and self.epoch % interval == 0 and self.iter < self.max_iters:
                    du.broadcast_buffers(self.model)
                    metrics = self._evaluate_or_fail(f"at epoch {self.epoch}")
                self._stop_if_interrupted()
        finally:
            bar.close()
        self.save("latest.pth")
        du.broadcast_buffers(self.model)  # rank 0's BatchNorm statistics (the saved ones) on every process
        if self.world > 1:
            self._check_replicas_in_sync()
        self._stop_if_interrupted()
        if self.cfg.data.get("val") is not None and eval_cfg.get("interval", 0) >= 0:
            metrics = self._evaluate_or_fail("after training")
            self._stop_if_interrupted()  # Ctrl-C during the evaluation ends with 130 too, never a silent 0
        return metrics

    def _stop_if_interrupted(self) -> None:
        """If Ctrl-C was pressed on any process: save latest.pth and raise TrainingInterrupted (all processes)."""
        if not du.any_process(interrupt.requested(), self.device):
            return
        if self.rank == 0:
            logger.info("Ctrl-C: stopping at iteration %d", self.iter)
        self.save("latest.pth")
        raise TrainingInterrupted(os.path.join(self.work_dir, "latest.pth"), self.iter)

    def _train_epoch(self, bar, latest_iters: int | None) -> None:
        self.ddp.train()
        batches = len(self.loader)
        for step, (images, targets) in enumerate(self.loader):
            images = [im.to(self.device, non_blocking=True) for im in images]
            targets = [{"masks": t["masks"].to(self.device), "labels": t["labels"].to(self.device)} for t in targets]
            first = step - step % self.accumulate  # first micro-batch of this accumulation group
            group = min(self.accumulate, batches - first)  # the epoch's last group may be shorter
            last_of_group = step + 1 == first + group
            self.scale_rng.seed(derive_seed(self.seed, SCALE, self.rank, self.iter, step - first))
            sync = nullcontext() if last_of_group or self.world == 1 else self.ddp.no_sync()
            with sync:
                with precision_autocast(amp_dtype(self.device) if self.amp else None, self.device):
                    losses = self.ddp(images, targets)
                loss = sum(losses.values())
                self._check_finite(loss, losses)
                self.scaler.scale(loss / group).backward()
            parts = {**losses, "loss": loss}
            if step == first:  # sum the group's micro-batches for logging
                summed = {k: torch.zeros_like(v.detach()) for k, v in parts.items()}
            summed = {k: summed[k] + v.detach() for k, v in parts.items()}
            if not last_of_group:
                continue
            self._step()
            self.iter += 1
            logged = du.reduce_mean({k: v / group for k, v in summed.items()})  # the group's mean
            logged.update(self._unweighted(logged))
            warning = self.guard.update(logged["loss_ins"], self.iter)
            if warning and self.rank == 0:
                logger.warning("%s", warning)
            bar.update(1)
            bar.set_postfix(loss=f"{logged['loss']:.3f}", lr=f"{self.optimizer.param_groups[0]['lr']:.2e}")
            if self.rank == 0 and (self.iter % self.log_interval == 0 or self.iter == self.max_iters):
                self._log(logged)
            if latest_iters and self.iter % latest_iters == 0:
                self.save("latest.pth")
            elif self._save_time_is_up():
                self.save("latest.pth")
            if self.iter >= self.max_iters:
                break
            if step + 1 < batches:  # at the end of the epoch, run() checks after the epoch checkpoint
                self._stop_if_interrupted()

    def _step(self) -> None:
        lr = self.schedule.lr_at(self.epoch, self.iter)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        clip = self.cfg.get("grad_clip")
        log_now = self.rank == 0 and (self.iter + 1) % self.log_interval == 0
        if clip or log_now:
            self.scaler.unscale_(self.optimizer)
        if log_now:  # per-branch gradient norms, to TensorBoard: a collapsing branch shows here first
            self._grad_norms = branch_grad_norms(self.model)
        if clip:
            nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.grad is not None], **clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema:
            self.ema.update(self.model)

    def _check_finite(self, loss: torch.Tensor, losses: dict) -> None:
        if not torch.isfinite(loss):
            parts = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in losses.items())
            latest = os.path.join(self.work_dir, "latest.pth")
            kept = f"; the last good checkpoint is {latest}" if os.path.exists(latest) else ""
            raise TrainingError(f"iteration {self.iter + 1}: loss is {float(loss.detach())} ({parts}); "
                                f"training stopped{kept}")

    def _unweighted(self, logged: dict) -> dict[str, float]:
        """``dice`` and ``focal``: ``loss_ins`` and ``loss_cate`` without their config weights, so that runs with
        different weights compare (Dice is in [0, 1]; a collapsed mask branch sits at 1)."""
        head = self.model.bbox_head
        weights = {"dice": ("loss_ins", head.loss_ins_weight), "focal": ("loss_cate", head.loss_cate.loss_weight)}
        return {name: logged[key] / w for name, (key, w) in weights.items() if key in logged and w}

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
        for k, v in self._grad_norms.items():
            self.writer.add_scalar(f"grad_norm/{k}", v, self.iter)

    def _check_replicas_in_sync(self) -> None:
        """DDP keeps every process's parameters equal; verify it once, cheaply, from one number per process.

        Buffers are not compared: BatchNorm statistics differ per process until ``broadcast_buffers``.
        Logs the parameters' fingerprint of every process and that of rank 0's whole state (the saved one).
        """
        with torch.no_grad():
            own = fingerprint({k: p for k, p in self.model.named_parameters()})
        prints = du.all_gather_object(own)
        if self.rank == 0:
            saved = fingerprint((self.ema.module if self.ema else self.model).state_dict())  # the average with ema
            logger.info("weights of the %d processes after training: %s (parameters); rank 0's whole state, saved: "
                        "%.10e", self.world, ", ".join(f"{p:.10e}" for p in prints), saved)
        if len(set(prints)) != 1:
            raise TrainingError(f"the {self.world} processes ended with different weights: {prints}")

    def _evaluate_or_fail(self, when: str) -> dict:
        """:meth:`evaluate` with the weights on disk first; a failure is a one-line :class:`TrainingError`
        naming the checkpoint to evaluate later, not a traceback (SOLOV2_DEBUG=1 shows the cause).
        Every process calls it (as :meth:`save`)."""
        self.save("latest.pth")  # a no-op where latest.pth already holds this iteration
        try:
            return self.evaluate()
        except Exception as exc:
            latest = os.path.join(self.work_dir, "latest.pth")
            raise TrainingError(f"evaluation failed {when} ({_reason(exc)}); the trained weights are in {latest}: "
                                f"solov2 eval {latest}") from exc

    def evaluate(self) -> dict:
        from solov2.data import build_dataset
        eval_cfg = self.cfg.get("evaluation", {}) or {}
        metrics, error = {}, None
        try:
            dataset = build_dataset(self.cfg.data.val)
            encoded = inference_on_dataset(self.ema.module if self.ema else self.model, dataset, self.device)
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
    if isinstance(exc, (ValueError, TrainingError)) and text:
        return text
    return f"{type(exc).__name__}: {text}".rstrip(": ")

"""Starting training: one process, ``--gpus N`` spawned local processes, or one process of a torchrun job
(as detectron2's ``engine/launch.py``); the device, the logging set-up, and what an interrupted or failed
worker tells the user (the command that resumes, the worker's error as one line)."""
from __future__ import annotations

import json
import logging
import os
import shlex
import sys
from pathlib import Path

from solov2.errors import one_line

__all__ = ["train_main", "resolve_device", "setup_logging", "resume_command", "interrupted_message", "worker_error",
           "LAUNCHERS"]

# "pytorch" is MMDetection's name for a process started by torch.distributed's launcher (torchrun).
LAUNCHERS = ["auto", "none", "torchrun", "pytorch"]


def setup_logging(work_dir: str | None = None, rank: int = 0) -> None:
    """Log to stdout (and ``work_dir/train.log`` on rank 0); other ranks log warnings only."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if work_dir and rank == 0:
        os.makedirs(work_dir, exist_ok=True)
        handlers.append(logging.FileHandler(os.path.join(work_dir, "train.log")))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, handlers=handlers, force=True,
                        format="%(asctime)s %(message)s", datefmt="%H:%M:%S")


def resolve_device(device: str | None) -> str:
    """``device`` as given (``"cpu"``, ``"cuda"``, ``"cuda:N"``), or ``"cuda"`` where CUDA is available and
    ``"cpu"`` elsewhere when None. A CUDA device on a machine without one is a one-line ``ValueError``
    (instead of torch's ``Found no NVIDIA driver`` traceback at the first tensor moved there)."""
    import torch
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    return device


def train_main(config: str, work_dir: str | None = None, resume: str | None = None, cfg_options=None,
               device: str | None = None, amp: bool | None = None, gpus: int = 1, launcher: str = "auto",
               seed: int | None = None, deterministic: bool = False) -> dict:
    """Train from a config file: one process, ``gpus`` spawned local processes, or under torchrun
    (``launcher`` ``"torchrun"``/``"pytorch"``, or ``"auto"`` when torchrun's variables are set).
    ``amp`` None: mixed precision where it is the faster default (bf16 on CPUs with native bf16, see
    ``solov2.precision.default_amp``). Returns the final metrics (``work_dir/metrics.json``)."""
    from solov2 import distributed as du
    from solov2.config import load_config
    from solov2.precision import default_amp, warn_if_not_native
    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher must be one of {LAUNCHERS}, got {launcher!r}")
    cfg = load_config(config, cfg_options)  # fail fast, before any process is started
    work_dir = work_dir or cfg.get("work_dir") or os.path.join("work_dirs", Path(config).stem)
    if resume == "auto":
        resume = os.path.join(work_dir, "latest.pth")
    resume = resume or cfg.get("resume_from")
    if resume and not os.path.isfile(resume):
        raise FileNotFoundError(f"{resume}: checkpoint to resume from not found")
    device = resolve_device(device)
    if ":" in device and (gpus > 1 or launcher in ("torchrun", "pytorch")):
        raise ValueError(f"--device {device} names one GPU; with several processes choose the GPUs with "
                         f"CUDA_VISIBLE_DEVICES and give --device cuda")
    amp = default_amp(device) if amp is None else amp
    if amp:
        warn_if_not_native("fp16" if device.startswith("cuda") else "bf16", device)  # --amp: fp16 on CUDA, bf16 on CPU
    seed = seed if seed is not None else (cfg.get("seed") or 0)
    opts = dict(config=config, cfg_options=cfg_options, work_dir=work_dir, resume=resume, device=device, amp=amp,
                seed=seed, deterministic=deterministic)
    if launcher in ("torchrun", "pytorch") or (launcher == "auto" and du.in_torchrun()):
        return _train_worker(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), opts)
    if gpus > 1:
        if device == "cpu":
            print(f"CUDA is not available: starting {gpus} CPU processes with the gloo backend", flush=True)
        elif gpus > __import__("torch").cuda.device_count():
            raise ValueError(f"--gpus {gpus}: only {__import__('torch').cuda.device_count()} CUDA devices visible")
        import torch.multiprocessing
        stopped_at = torch.multiprocessing.get_context("spawn").Value("q", -1)  # iteration saved on Ctrl-C
        if du.spawn(_spawned_worker, gpus, (gpus, opts, stopped_at)) or stopped_at.value >= 0:
            from solov2.errors import TrainingInterrupted
            raise TrainingInterrupted(os.path.join(work_dir, "latest.pth"),
                                      stopped_at.value if stopped_at.value >= 0 else None)
        return _read_metrics(work_dir)
    return _train_worker(0, 1, opts)


def _spawned_worker(rank: int, world: int, opts: dict, stopped_at) -> None:
    from solov2.engine.interrupt import deferred_sigint
    from solov2.errors import TrainingInterrupted
    with deferred_sigint():  # from the start, so that an early Ctrl-C is not lost (the trainer checks it)
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
        if opts["device"] == "cpu":
            # N processes x the default thread count oversubscribe the cores, and OpenMP then slows to a crawl.
            import torch

            from solov2.distributed import usable_cpu_cores
            torch.set_num_threads(max(1, usable_cpu_cores() // world))
        try:
            _train_worker(rank, world, opts)
        except TrainingInterrupted as exc:  # every process stopped at the same iteration; rank 0 saved it
            if rank == 0:
                stopped_at.value = exc.iteration


def _train_worker(rank: int, world: int, opts: dict) -> dict:
    from solov2 import distributed as du
    from solov2.config import find_config, load_config
    from solov2.engine.trainer import Trainer
    setup_logging(opts["work_dir"], rank)
    if world > 1 and not du.is_distributed():
        du.init_process_group(rank, world, opts["device"])
    device = opts["device"]
    if device == "cuda" and world > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}"
    try:
        cfg = load_config(opts["config"], opts["cfg_options"])
        if rank == 0:
            os.makedirs(opts["work_dir"], exist_ok=True)
            # a packaged config given by name is dumped under its file's name (the .py tells the format)
            cfg.dump(os.path.join(opts["work_dir"], Path(find_config(opts["config"])).name))
            logging.getLogger("solov2").info("training %s in %s on %s x%d", opts["config"], opts["work_dir"],
                                             device, world)
        trainer = Trainer(cfg, opts["work_dir"], device=device, amp=opts["amp"], resume=opts["resume"],
                          seed=opts["seed"], deterministic=opts["deterministic"])
        metrics = trainer.run()
        if rank == 0:  # last, after the AP table: where the trained model is
            latest = os.path.abspath(os.path.join(opts["work_dir"], "latest.pth"))
            logging.getLogger("solov2").info("checkpoint: %s (solov2 eval / predict / export take it)", latest)
        return metrics
    finally:
        du.cleanup()


def _read_metrics(work_dir: str) -> dict:
    path = os.path.join(work_dir, "metrics.json")
    return json.load(open(path)) if os.path.exists(path) else {}


def resume_command(command: list[str], flags: tuple[str, ...], checkpoint: str) -> str:
    """``command`` (program and arguments, as typed) without its resume option (any of ``flags``, with its
    value) and with ``flags[0] checkpoint`` added: the line that continues an interrupted run."""
    kept, i = [], 0
    while i < len(command):
        arg = command[i]
        if arg in flags:  # "--resume" (whose value is optional) or "--resume_from PATH"
            i += 2 if i + 1 < len(command) and not command[i + 1].startswith("-") else 1
            continue
        if not any(arg.startswith(f + "=") for f in flags):
            kept.append(arg)
        i += 1
    return shlex.join(kept + [flags[0], checkpoint])


def interrupted_message(exc, resume_hint=None) -> str:
    """What a run stopped by Ctrl-C (``exc``: :class:`~solov2.errors.TrainingInterrupted`) prints:
    the iteration and ``resume_hint(checkpoint)``, the command that resumes it (None: the error's text)."""
    if exc.iteration is None:
        return "interrupted before the first checkpoint"
    if resume_hint is None:
        return f"interrupted: {exc}"
    return f"interrupted at iteration {exc.iteration}; resume with: {resume_hint(exc.checkpoint)}"


def worker_error(exc: BaseException, expected: tuple[type, ...]) -> str | None:
    """The message of an error of type ``expected`` raised in a spawned worker process (``exc`` is
    ``torch.multiprocessing``'s ``ProcessRaisedException``, whose text ends with ``module.Type: message``);
    None for anything else."""
    import importlib

    from torch.multiprocessing import ProcessRaisedException
    if not isinstance(exc, ProcessRaisedException):
        return None
    last = one_line(exc)
    qualified, _, message = last.partition(": ")
    module, _, name = qualified.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module or "builtins"), name)
    except (ImportError, AttributeError, ValueError):
        return None
    return message if isinstance(cls, type) and issubclass(cls, expected) and message else None

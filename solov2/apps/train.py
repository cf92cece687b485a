"""``solov2 train`` (and ``tools/train.py``): the command line of :func:`solov2.engine.launch.train_main`."""
from __future__ import annotations

import argparse

from solov2.apps.arguments import add_cfg_options, add_device
from solov2.engine.launch import LAUNCHERS, train_main

__all__ = ["add_arguments", "main"]

AMP_HELP = ("mixed precision: fp16 on CUDA, bf16 on CPU; the log says which (default: on for CPUs with native bf16, "
            "AVX512-BF16 or AMX; off otherwise)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="config file (.py) or a packaged config's name (`solov2 configs`)")
    parser.add_argument("--work-dir", help="logs and checkpoints (default: the config's work_dir, else "
                        "work_dirs/CONFIG)")
    parser.add_argument("--resume", nargs="?", const="auto", default=None,
                        help="resume from CKPT, or from WORK_DIR/latest.pth when no path is given")
    add_cfg_options(parser)
    add_device(parser)
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, help=AMP_HELP)
    parser.add_argument("--gpus", type=int, default=1, help="local processes (one per GPU; CPU processes without "
                        "CUDA)")
    parser.add_argument("--launcher", choices=LAUNCHERS, default="auto", help="torchrun (MMDetection: pytorch): a "
                        "process of a torchrun job; none: start --gpus processes here; auto: torchrun if its "
                        "variables are set")
    parser.add_argument("--seed", type=int, help="random seed (default: the config's seed, else 0)")
    parser.add_argument("--deterministic", action="store_true", help="deterministic algorithms (slower)")


def main(args: argparse.Namespace) -> None:
    train_main(args.config, args.work_dir, args.resume, args.cfg_options, args.device, args.amp, args.gpus,
               args.launcher, args.seed, args.deterministic)

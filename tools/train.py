"""MMDetection-style entry point: python tools/train.py CONFIG [--gpus N] [--work_dir DIR] [--resume_from CKPT]"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from solov2.apps.arguments import HelpFormatter  # noqa: E402
from solov2.cli import main as solov2_main
from solov2.engine.launch import LAUNCHERS, resume_command  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description="Train SOLOv2 (wrapper over `solov2 train`)", formatter_class=HelpFormatter)
    p.add_argument("config", help="config file (.py)")
    p.add_argument("--gpus", type=int, default=1, help="local processes (one per GPU; CPU processes without CUDA)")
    p.add_argument("--work_dir", "--work-dir", dest="work_dir",
                   help="logs and checkpoints (default: the config's work_dir, else work_dirs/CONFIG)")
    p.add_argument("--resume_from", "--resume-from", dest="resume_from", help="checkpoint to resume from")
    p.add_argument("--launcher", choices=LAUNCHERS, default="auto", help="as solov2 train --launcher")
    p.add_argument("--seed", type=int, help="random seed (default: the config's seed, else 0)")
    p.add_argument("--deterministic", action="store_true", help="deterministic algorithms (slower)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction,
                   help="mixed precision, fp16 on CUDA, bf16 on CPU (default: on for CPUs with native bf16)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available, else cpu)")
    p.add_argument("--cfg-options", "--cfg_options", dest="cfg_options", nargs="+", metavar="KEY=VALUE",
                   help="config overrides a.b.c=value")
    a = p.parse_args()
    argv = ["train", a.config, "--gpus", str(a.gpus), "--launcher", a.launcher]
    for flag, value in (("--work-dir", a.work_dir), ("--resume", a.resume_from), ("--seed", a.seed),
                        ("--device", a.device)):
        if value is not None:
            argv += [flag, str(value)]
    argv += ["--deterministic"] * a.deterministic + {True: ["--amp"], False: ["--no-amp"], None: []}[a.amp]
    if a.cfg_options:
        argv += ["--cfg-options", *a.cfg_options]
    return solov2_main(argv, resume_hint=lambda ckpt: resume_command(
        ["python", sys.argv[0], *sys.argv[1:]], ("--resume_from", "--resume-from"), ckpt))


if __name__ == "__main__":
    sys.exit(main())

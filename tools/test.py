"""MMDetection-style entry point: python tools/test.py [CONFIG] CHECKPOINT [--eval segm|cityscapes] [--out FILE]

A checkpoint written by ``solov2 train`` carries its config, so CONFIG may be left out."""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from solov2.apps.arguments import HelpFormatter  # noqa: E402
from solov2.cli import main as solov2_main


def main() -> int:
    p = argparse.ArgumentParser(description="Evaluate SOLOv2 (wrapper over `solov2 eval`)",
                                formatter_class=HelpFormatter)
    p.add_argument("config", help="config file (.py), or the checkpoint alone if it was written by solov2 train")
    p.add_argument("checkpoint", nargs="?", help="the checkpoint, after a config")
    p.add_argument("--eval", choices=["segm", "cityscapes"], help="COCO mask AP or Cityscapes AP (default: the "
                   "config's evaluation.metric, else segm)")
    p.add_argument("--out", help="metrics JSON file")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available, else cpu)")
    p.add_argument("--split", choices=["train", "val", "test"], default="test",
                   help="data set of the config to evaluate (default test, as MMDetection's test.py)")
    p.add_argument("--cfg-options", "--cfg_options", dest="cfg_options", nargs="+", metavar="KEY=VALUE",
                   help="config overrides a.b.c=value")
    a = p.parse_args()
    argv = ["eval", a.config, *([a.checkpoint] if a.checkpoint else []), "--split", a.split]
    if a.eval:
        argv += ["--metric", a.eval]
    if a.out:
        argv += ["--metrics-out", a.out]
    if a.device:
        argv += ["--device", a.device]
    if a.cfg_options:
        argv += ["--cfg-options", *a.cfg_options]
    return solov2_main(argv)


if __name__ == "__main__":
    sys.exit(main())

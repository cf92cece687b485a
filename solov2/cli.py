"""The ``solov2`` command: one parser whose sub-commands are defined by the ``solov2.apps`` modules (each one's
``add_arguments`` and the function that runs it), and the one place that turns our errors into one line."""
from __future__ import annotations

import argparse
import os
import sys

from solov2.apps import benchmark, configs, convert, data_tools, demo, evaluate, export, predict, serve, train, tune
from solov2.apps.arguments import HelpFormatter
from solov2.engine.launch import interrupted_message, resume_command, worker_error
from solov2.errors import one_line

__all__ = ["COMMANDS", "build_parser", "main", "fit_threads_to_usable_cores"]

# name: (help, add_arguments, run)
COMMANDS = {
    "train": ("train a model from a config", train.add_arguments, train.main),
    "eval": ("evaluate a checkpoint (COCO mask AP or Cityscapes AP) as training evaluates it",
             evaluate.add_arguments, evaluate.main),
    "predict": ("predict on images, folders, globs or videos and draw the results", predict.add_arguments,
                predict.main),
    "demo": ("built-in data -> train (on CPU unless --device) -> mask AP -> pictures", demo.add_arguments,
             demo.main),
    "configs": ("list the configs that ship with the package (usable by name)", configs.add_arguments,
                configs.main),
    "check-data": ("report on a config's data before training: images, instances per class and FPN level, "
                   "dropped annotations", data_tools.add_check_data_arguments, data_tools.run_check_data),
    "labelme-to-coco": ("convert a folder of LabelMe JSON files to one COCO instance JSON",
                        data_tools.add_labelme_arguments, data_tools.run_labelme_to_coco),
    "make-shapes": ("write the built-in synthetic data set as a COCO folder", data_tools.add_make_shapes_arguments,
                    data_tools.run_make_shapes),
    "cityscapes-to-coco": ("convert Cityscapes polygons to a COCO instance JSON", data_tools.add_cityscapes_arguments,
                           data_tools.run_cityscapes_to_coco),
    "export": ("export to ONNX, OpenVINO IR or TorchScript", export.add_export_arguments, export.export),
    "quantize": ("int8 OpenVINO IR by NNCF post-training quantization, calibrated on real images",
                 export.add_quantize_arguments, export.quantize),
    "convert": ("convert SOLO / MMDetection 3.x / AdelaiDet checkpoints to ours", convert.add_arguments,
                convert.main),
    "benchmark": ("latency, throughput and memory of Predictors", benchmark.add_arguments, benchmark.main),
    "tune": ("measure (once per machine, cached) which convolutions run on Winograd; --reset forgets",
             tune.add_arguments, tune.main),
    "serve": ("a page and a JSON API (/predict, /health) over HTTP", serve.add_arguments, serve.main),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser("solov2", description="SOLOv2 instance segmentation",
                                     formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (text, add_arguments, run) in COMMANDS.items():
        command = sub.add_parser(name, help=text, description=text, formatter_class=HelpFormatter)
        add_arguments(command)
        command.set_defaults(func=run)
    return parser


def fit_threads_to_usable_cores() -> None:
    """torch starts one thread per core in the affinity mask, which in a container with a CPU quota (``docker
    --cpus 2`` on a 32-core host) is the host's count: 32 threads then share 2 cores' worth of time and the
    quota throttles them all. Cap the threads at the usable cores, unless the user set ``OMP_NUM_THREADS``."""
    if "OMP_NUM_THREADS" in os.environ:
        return
    import torch

    from solov2.distributed import usable_cpu_cores
    cores = usable_cpu_cores()
    if torch.get_num_threads() > cores:
        torch.set_num_threads(cores)


def main(argv: list[str] | None = None, resume_hint=None) -> int:
    """Run ``solov2 ARGV``; returns the exit status: 0, 1 for an error (one line on stderr; ``SOLOV2_DEBUG=1``
    shows the traceback), 130 for Ctrl-C. ``resume_hint(checkpoint) -> str``: the command that resumes an
    interrupted training (default: this ``solov2 train`` command with ``--resume checkpoint``)."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    from solov2.config import parse_overrides
    from solov2.errors import SOLOv2Error, TrainingInterrupted
    # Errors about the user's input (our own, and missing files or bad values); anything else is a bug and keeps
    # its traceback.
    expected = (SOLOv2Error, FileNotFoundError, ValueError)
    fit_threads_to_usable_cores()
    try:
        if getattr(args, "cfg_options", None):
            args.cfg_options = parse_overrides(args.cfg_options)  # KEY=VALUE strings -> {key: value}
        args.func(args)
    except TrainingInterrupted as exc:
        if os.environ.get("RANK", "0") == "0":  # under torchrun every process stops; rank 0 says so
            hint = resume_hint or (lambda ckpt: resume_command(["solov2", *argv], ("--resume",), ckpt))
            print(interrupted_message(exc, hint if args.command == "train" else None), file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except expected as exc:
        if os.environ.get("SOLOV2_DEBUG"):
            raise
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:
        # --gpus N: a worker's error arrives as its traceback text; an expected one is shown as one line too.
        message = worker_error(exc, expected)
        if message is None or os.environ.get("SOLOV2_DEBUG"):
            raise
        print(f"error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

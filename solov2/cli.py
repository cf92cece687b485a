"""The ``solov2`` command: argument parsing and dispatch. Each sub-command's parser names its function
(``set_defaults(func=...)``); the work is done in ``solov2.engine.launch`` (train) and ``solov2.apps``."""
from __future__ import annotations

import argparse
import os
import sys

from solov2.apps.data_tools import check_data_main, cityscapes_to_coco_main, labelme_to_coco_main, make_shapes_main
from solov2.apps.demo import demo_main
from solov2.apps.evaluate import eval_main
from solov2.apps.predict import predict_main
from solov2.engine.launch import (
    LAUNCHERS,
    interrupted_message,
    resolve_device,
    resume_command,
    train_main,
    worker_error,
)
from solov2.errors import one_line

PRECISIONS = ["auto", "fp32", "bf16", "fp16"]  # solov2.precision.PRECISION_CHOICES
PRECISION_HELP = ("network precision; auto: bf16 on CPUs with native bf16, fp32 elsewhere "
                  "(solov2.precision.resolve_precision); fp16: CUDA only")
FROM_CHECKPOINT = ("a checkpoint of `solov2 train` (it carries its config and class names), or a .py config and then "
                   "the checkpoint (the config's test-time settings are used; needed for official SOLO checkpoints)")
DEVICE_HELP = "cpu or cuda (default: cuda if available, else cpu)"
AMP_HELP = ("mixed precision: fp16 on CUDA, bf16 on CPU; the log says which (default: on for CPUs with native bf16, "
            "AVX512-BF16 or AMX; off otherwise)")
BACKENDS = ["torch", "onnxruntime", "openvino"]  # solov2.inference.predictor.BACKENDS
BACKEND_HELP = ("runtime of the network: torch, or the checkpoint exported to onnxruntime (fp32) or OpenVINO "
                "(fp32, bf16) on the CPU, same post-processing; an exported .onnx / .xml file given as CHECKPOINT "
                "runs in its own")
CFG_HELP = "config overrides a.b.c=value (Python literals); a key the config lacks is an error"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, unless it has none (None, a flag) or the help says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text, flag = action.help or "", action.nargs == 0 and not isinstance(action, argparse.BooleanOptionalAction)
        if action.default is None or flag or "default" in text or not action.option_strings:
            return text
        shown = " ".join(map(str, action.default)) if isinstance(action.default, list) else str(action.default)
        return f"{text} (default: {shown.replace('%', '%%')})"


def _size(values: list[int]) -> int | tuple[int, int]:
    """``[S]`` -> S (square), ``[H, W]`` -> (H, W): the form of every ``--image-size``."""
    if len(values) not in (1, 2):
        raise ValueError(f"--image-size: give one size (square) or H W, got {len(values)} numbers")
    return values[0] if len(values) == 1 else (values[0], values[1])


def _sources(args, command: str, inputs: bool = False) -> None:
    """``[CONFIG.py] CHECKPOINT [INPUT ...]`` -> ``args.config``, ``args.checkpoint`` (and ``args.inputs``)."""
    from solov2.checkpoint.model_config import split_sources
    args.config, args.checkpoint, rest = split_sources(args.sources, command)
    if inputs and not rest:
        raise ValueError(f"solov2 predict: no images or videos given after the checkpoint {args.checkpoint}")
    if rest and not inputs:
        raise ValueError(f"solov2 {command}: unexpected argument(s) {rest}; expected [CONFIG.py] CHECKPOINT")
    args.inputs = rest


def _eval(args) -> None:
    _sources(args, "eval")
    eval_main(args.config, args.checkpoint, args.metric, args.metrics_out, args.cfg_options, args.device, args.split,
              precision=args.precision, optimize=args.optimize, backend=args.backend)


def _predict(args) -> None:
    _sources(args, "predict", inputs=True)
    written = predict_main(args.config, args.checkpoint, args.inputs, args.out, args.score_thr, args.device,
                           args.save_json, args.save_masks, args.precision, args.optimize, args.ann, args.backend)
    print(f"wrote {len(written)} result(s) to {args.out}")


def _export(args) -> None:
    from solov2.checkpoint.model_config import load_model, resolve_model
    from solov2.deploy.export import export_onnx, export_openvino, export_torchscript
    _sources(args, "export")
    resolved = resolve_model(args.config, args.checkpoint, args.cfg_options)
    model, _ = load_model(resolved.cfg, resolved.ckpt, name=resolved.checkpoint)
    size = tuple(args.input_size) if args.input_size else None
    kwargs = dict(input_size=size, with_postprocess=args.with_postprocess, class_names=resolved.classes)
    if args.format == "onnx":
        export_onnx(model, args.out, dynamic=args.dynamic, **kwargs)
    elif args.format == "openvino":
        export_openvino(model, args.out, dynamic=args.dynamic, **kwargs)
    else:
        export_torchscript(model, args.out, **kwargs)
    print(f"wrote {args.out}")


def _quantize(args) -> None:
    from solov2.deploy.quantize import quantize_main
    _sources(args, "quantize")
    size = tuple(args.input_size) if args.input_size else None
    out = quantize_main(args.config, args.checkpoint, args.calib_images, args.out, args.images, args.cfg_options, size)
    print(f"wrote {out}")


def _convert(args) -> None:
    from solov2.checkpoint.convert import convert_checkpoint
    unmapped = convert_checkpoint(args.input, args.output, args.source, args.strict, args.allow_pickle)
    print(f"wrote {args.output}" + (f" ({len(unmapped)} key(s) not mapped)" if unmapped else ""))


def _benchmark(args) -> None:
    from solov2.apps.benchmark import run_from_args
    if run_from_args(args) != 0:
        raise SystemExit(2)


def _tune(args) -> None:
    from solov2.apps.tune import tune_main
    if len(args.sources) > 2:
        raise ValueError(f"solov2 tune: expected [CONFIG.py] [CHECKPOINT], got {len(args.sources)} arguments")
    source, checkpoint = (args.sources + [None, None])[:2]
    tune_main(source, checkpoint, args.reset, args.all_machines, args.threads)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("solov2", description="SOLOv2 instance segmentation", formatter_class=HelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, help: str, func) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help, description=help, formatter_class=HelpFormatter)
        parser.set_defaults(func=func)
        return parser

    def add_cfg_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--cfg-options", nargs="+", default=None, metavar="KEY=VALUE", help=CFG_HELP)

    t = command("train", "train a model from a config file", lambda a: train_main(
        a.config, a.work_dir, a.resume, a.cfg_options, a.device, a.amp, a.gpus, a.launcher, a.seed, a.deterministic))
    t.add_argument("config", help="config file (.py)")
    t.add_argument("--work-dir", help="logs and checkpoints (default: the config's work_dir, else work_dirs/CONFIG)")
    t.add_argument("--resume", nargs="?", const="auto", default=None,
                   help="resume from CKPT, or from WORK_DIR/latest.pth when no path is given")
    add_cfg_options(t)
    t.add_argument("--device", choices=["cpu", "cuda"], help=DEVICE_HELP)
    t.add_argument("--amp", action=argparse.BooleanOptionalAction, help=AMP_HELP)
    t.add_argument("--gpus", type=int, default=1, help="local processes (one per GPU; CPU processes without CUDA)")
    t.add_argument("--launcher", choices=LAUNCHERS, default="auto", help="torchrun (MMDetection: pytorch): a process "
                   "of a torchrun job; none: start --gpus processes here; auto: torchrun if its variables are set")
    t.add_argument("--seed", type=int, help="random seed (default: the config's seed, else 0)")
    t.add_argument("--deterministic", action="store_true", help="deterministic algorithms (slower)")

    e = command("eval", "evaluate a checkpoint (COCO mask AP or Cityscapes AP)", _eval)
    e.add_argument("sources", nargs="+", metavar="[CONFIG.py] CHECKPOINT", help=FROM_CHECKPOINT + "; or CONFIG.py "
                   "and an exported .onnx / .xml file (the config's data sets, the file's model)")
    e.add_argument("--metric", choices=["segm", "cityscapes"], help="default: the config's, else segm")
    e.add_argument("--metrics-out", metavar="FILE.json", help="also write the metrics to this JSON file")
    e.add_argument("--split", default="val", choices=["train", "val", "test"], help="data.SPLIT of the config")
    add_cfg_options(e)
    e.add_argument("--device", choices=["cpu", "cuda"], help=DEVICE_HELP)
    e.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)
    e.add_argument("--optimize", action="store_true", help="the model as predict runs it (BatchNorm folded, ...)")
    e.add_argument("--backend", choices=BACKENDS, default="torch", help=BACKEND_HELP)

    pr = command("predict", "predict on images, folders, globs or videos and draw the results", _predict)
    pr.add_argument("sources", nargs="+", metavar="[CONFIG.py] CHECKPOINT INPUT",
                    help=FROM_CHECKPOINT + "; then images, folders, globs or videos")
    pr.add_argument("--out", default="runs/predict", help="output folder")
    pr.add_argument("--score-thr", type=float, default=0.3, help="instances scoring below this are not kept")
    pr.add_argument("--device", choices=["cpu", "cuda"], help=DEVICE_HELP)
    pr.add_argument("--save-json", action=argparse.BooleanOptionalAction, default=True, help="write results.json")
    pr.add_argument("--ann", metavar="FILE.json", help="COCO file whose image ids results.json uses (by file_name)")
    pr.add_argument("--save-masks", action="store_true", help="one PNG per instance")
    pr.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)
    pr.add_argument("--no-optimize", dest="optimize", action="store_false", help="run the model as built")
    pr.add_argument("--backend", choices=BACKENDS, default="torch", help=BACKEND_HELP)

    d = command("demo", "built-in data -> train (on CPU unless --device) -> mask AP -> pictures", lambda a: demo_main(
        a.out, a.train_images, a.val_images, _size(a.image_size), a.cfg_options, a.amp, resolve_device(a.device)))
    d.add_argument("--out", default="runs/demo", help="output folder (data, checkpoints, pictures)")
    d.add_argument("--train-images", type=int, default=1000, help="built-in training images")
    d.add_argument("--val-images", type=int, default=100, help="built-in validation images")
    d.add_argument("--image-size", type=int, nargs="+", default=[128], metavar="SIZE", help="the images' side, or H W")
    add_cfg_options(d)
    d.add_argument("--amp", action=argparse.BooleanOptionalAction, help=AMP_HELP)
    d.add_argument("--device", default="cpu", help="cpu (default) or cuda / cuda:N")

    m = command("make-shapes", "write the built-in synthetic data set as a COCO folder", lambda a: make_shapes_main(
        a.out, a.num_images, a.seed, _size(a.image_size)))
    m.add_argument("out", help="output folder (images/ and annotations.json)")
    m.add_argument("--num-images", type=int, default=200, help="number of images")
    m.add_argument("--seed", type=int, default=0, help="random seed of the images")
    m.add_argument("--image-size", type=int, nargs="+", default=[256], metavar="SIZE", help="the images' side, or H W")

    c = command("cityscapes-to-coco", "convert Cityscapes polygons to a COCO instance JSON",
                lambda a: cityscapes_to_coco_main(a.root, a.out_json, a.split))
    c.add_argument("root", help="Cityscapes folder with leftImg8bit/ and gtFine/")
    c.add_argument("out_json", help="COCO JSON file to write")
    c.add_argument("--split", default="train", help="Cityscapes split (train, val, ...)")

    cd = command("check-data", "report on a config's data before training: images, instances per class and FPN "
                 "level, dropped annotations", lambda a: check_data_main(a.config, a.cfg_options, a.split, a.out))
    cd.add_argument("config", help="config file (.py)")
    add_cfg_options(cd)
    cd.add_argument("--split", default="train", choices=["train", "val", "test"], help="data.SPLIT of the config "
                    "(train: sizes at the middle training scale)")
    cd.add_argument("--out", help="folder for data_report.png (default: the work dir train would use)")

    lm = command("labelme-to-coco", "convert a folder of LabelMe JSON files to one COCO instance JSON",
                 lambda a: labelme_to_coco_main(a.folder, a.out_json, a.image_root, a.categories_from))
    lm.add_argument("folder", help="folder searched recursively for LabelMe *.json files")
    lm.add_argument("out_json", help="COCO JSON file to write")
    lm.add_argument("--image-root", help="file_name is relative to it (default: FOLDER); use it as img_prefix")
    lm.add_argument("--categories-from", metavar="COCO.json", help="use this file's category ids and names "
                    "(e.g. the training set's, for a val folder): a label it lacks is an error")

    x = command("export", "export to ONNX, OpenVINO IR or TorchScript", _export)
    x.add_argument("sources", nargs="+", metavar="[CONFIG.py] CHECKPOINT", help=FROM_CHECKPOINT)
    x.add_argument("--format", choices=["onnx", "openvino", "torchscript"], default="onnx",
                   help="file format (openvino: IR .xml + .bin, converted from the ONNX by OpenVINO)")
    x.add_argument("--out", required=True, help="file to write (openvino: FILE.xml)")
    x.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="static input size, multiples of "
                   "32 (default: a square of the test scale's long side, which holds any aspect ratio)")
    x.add_argument("--dynamic", action="store_true", help="ONNX, OpenVINO: dynamic input height and width")
    x.add_argument("--with-postprocess", action="store_true", help="thresholds, dynamic masks, Matrix NMS in the graph")
    add_cfg_options(x)  # test-time settings to export with, e.g. model.test_cfg.score_thr=0.2

    q = command("quantize", "int8 OpenVINO IR by NNCF post-training quantization, calibrated on real images", _quantize)
    q.add_argument("sources", nargs="+", metavar="[CONFIG.py] CHECKPOINT", help=FROM_CHECKPOINT)
    q.add_argument("--calib-images", type=int, default=300, metavar="N", help="calibration images (drawn with seed 0)")
    q.add_argument("--out", required=True, help="the IR to write (FILE.xml and FILE.bin)")
    q.add_argument("--images", metavar="DIR", help="calibrate on the images of this folder (default: the training "
                   "set of the config, data.train, without random flips)")
    q.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="a static input size, multiples of 32 "
                   "(default: dynamic, as --backend openvino runs)")
    add_cfg_options(q)

    cv = command("convert", "convert SOLO / MMDetection 3.x / AdelaiDet checkpoints to ours", _convert)
    cv.add_argument("--from", dest="source", choices=["solo", "mmdet", "adelaidet"], required=True,
                    help="the code base that wrote INPUT")
    cv.add_argument("input", help="checkpoint of the other code base")
    cv.add_argument("output", help="where to write our checkpoint")
    cv.add_argument("--strict", action="store_true", help="fail if a key cannot be mapped (else: a warning)")
    cv.add_argument("--allow-pickle", action="store_true", help="full unpickling (trusted files only; mmengine)")

    tu = command("tune", "measure (once per machine, cached) which convolutions run on Winograd; --reset forgets",
                 lambda a: _tune(a))
    tu.add_argument("sources", nargs="*", metavar="[CONFIG.py] [CHECKPOINT]",
                    help="the model to tune for (default: the seed config)")
    tu.add_argument("--reset", action="store_true", help="forget this CPU's cached choices first (alone: only that)")
    tu.add_argument("--all", dest="all_machines", action="store_true", help="with --reset: every machine's")
    tu.add_argument("--threads", type=int, help="torch.set_num_threads (the choices are cached per thread count)")

    from solov2.apps.benchmark import add_arguments as add_benchmark_arguments
    add_benchmark_arguments(command("benchmark", "latency, throughput and memory", _benchmark))
    return p


def main(argv: list[str] | None = None, resume_hint=None) -> int:
    """``resume_hint(checkpoint) -> str``: the command that resumes an interrupted training (default: this
    ``solov2 train`` command with ``--resume checkpoint``)."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    from solov2.config import parse_overrides
    from solov2.errors import CheckpointError, ConfigError, TrainingError, TrainingInterrupted
    # Errors about the user's input (DataError, ExportError, ... are ValueErrors); anything else is a bug
    # and keeps its traceback.
    expected = (ConfigError, CheckpointError, FileNotFoundError, ValueError, TrainingError)
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
        print(f"error: {one_line(exc)}", file=sys.stderr)  # SOLOV2_DEBUG=1 shows the traceback
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

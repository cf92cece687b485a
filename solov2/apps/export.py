"""``solov2 export`` (ONNX, OpenVINO IR, TorchScript) and ``solov2 quantize`` (int8 OpenVINO IR)."""
from __future__ import annotations

import argparse

from solov2.apps.arguments import add_cfg_options, add_sources, split_args_sources
from solov2.deploy.quantize import OVERFLOW_FIXES

__all__ = ["add_export_arguments", "export", "add_quantize_arguments", "quantize"]


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    add_sources(parser, exported=False)
    parser.add_argument("--format", choices=["onnx", "openvino", "torchscript"], default="onnx",
                        help="file format (openvino: IR .xml + .bin, converted from the ONNX by OpenVINO)")
    parser.add_argument("--out", required=True, help="file to write (openvino: FILE.xml)")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="the graph's static input size, "
                        "multiples of 32 (default: a square of the test scale's long side, which holds any aspect "
                        "ratio)")
    parser.add_argument("--dynamic", action="store_true", help="ONNX, OpenVINO: dynamic input height and width")
    parser.add_argument("--with-postprocess", action="store_true", help="thresholds, dynamic masks, Matrix NMS in "
                        "the graph")
    add_cfg_options(parser)  # test-time settings to export with, e.g. model.test_cfg.score_thr=0.2


def export(args: argparse.Namespace) -> None:
    from solov2.checkpoint.model_config import load_model, resolve_model
    from solov2.deploy.export import export_onnx, export_openvino, export_torchscript
    split_args_sources(args, "export")
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


def add_quantize_arguments(parser: argparse.ArgumentParser) -> None:
    add_sources(parser, exported=False)
    parser.add_argument("--calib-images", type=int, default=300, metavar="N", help="calibration images (drawn with "
                        "seed 0)")
    parser.add_argument("--out", required=True, help="the IR to write (FILE.xml and FILE.bin)")
    parser.add_argument("--images", metavar="DIR", help="calibrate on the images of this folder (default: the "
                        "training set of the config, data.train, without random flips)")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="the graph's static input size, "
                        "multiples of 32 (default: dynamic, as --backend openvino runs)")
    parser.add_argument("--overflow-fix", choices=OVERFLOW_FIXES, default="auto", help="7-bit weights (enable) "
                        "for CPUs without VNNI, whose 8-bit products saturate; auto: enable where this CPU has no "
                        "VNNI, first_layer_only where it has")
    parser.add_argument("--max-drop", type=float, metavar="AP", help="accuracy control: keep the layers that cost "
                        "most in float32 until int8 loses at most this much mask AP (absolute, e.g. 0.005) on "
                        "the config's data.val (default: every layer int8, no control)")
    parser.add_argument("--val-images", type=int, default=300, metavar="N", help="with --max-drop: the images of "
                        "data.val to measure mask AP on (drawn with seed 0)")
    parser.add_argument("--keep-fp32", nargs="+", default=[], metavar="REGEX", help="leave the graph's operations "
                        "whose names match in float32 (NNCF's ignored scope, e.g. '/solo_cate.*')")
    add_cfg_options(parser)


def quantize(args: argparse.Namespace) -> None:
    from solov2.deploy.quantize import quantize_main
    split_args_sources(args, "quantize")
    size = tuple(args.input_size) if args.input_size else None
    out = quantize_main(args.config, args.checkpoint, args.calib_images, args.out, args.images, args.cfg_options, size,
                        args.overflow_fix, args.max_drop, args.val_images, args.keep_fp32)
    print(f"wrote {out}")

"""The arguments several sub-commands share, defined once: the model to run (``[CONFIG] CHECKPOINT``), device,
precision, backend, optimize and config overrides. Each ``solov2.apps`` module adds its sub-command's arguments
with these (``add_arguments``) and runs it (``main``); :mod:`solov2.cli` builds the one parser from them."""
from __future__ import annotations

import argparse
import re

from solov2.inference.predictor import BACKENDS
from solov2.precision import PRECISION_CHOICES

__all__ = ["HelpFormatter", "add_sources", "split_args_sources", "add_device", "add_precision", "add_backend",
           "add_optimize", "add_cfg_options", "size", "device"]

FROM_CHECKPOINT = ("a checkpoint of `solov2 train` (it carries its config and class names), or a config (a .py file "
                   "or a packaged config's name) and then the checkpoint (the config's test-time settings are used; "
                   "needed for official SOLO checkpoints)")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, unless it has none (None, a flag) or the help says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text, flag = action.help or "", action.nargs == 0 and not isinstance(action, argparse.BooleanOptionalAction)
        if action.default is None or flag or "default" in text or not action.option_strings:
            return text
        shown = " ".join(map(str, action.default)) if isinstance(action.default, (list, tuple)) else str(action.default)
        return f"{text} (default: {shown.replace('%', '%%')})"


def device(text: str) -> str:
    """``--device``: ``cpu``, ``cuda`` or ``cuda:N``, the same for every sub-command."""
    if not re.fullmatch(r"cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}")
    return text


def size(values: list[int]) -> int | tuple[int, int]:
    """``[S]`` -> S (square), ``[H, W]`` -> (H, W): the form of every ``--image-size``."""
    if len(values) not in (1, 2):
        raise ValueError(f"--image-size: give one size (square) or H W, got {len(values)} numbers")
    return values[0] if len(values) == 1 else (values[0], values[1])


def add_sources(parser: argparse.ArgumentParser, inputs: str | None = None, exported: bool = True) -> None:
    """``[CONFIG] CHECKPOINT`` (then ``inputs``, described so, if given), split by :func:`split_args_sources`."""
    metavar = "[CONFIG] CHECKPOINT" + (" INPUT" if inputs else "")
    text = FROM_CHECKPOINT + ("; or a config and an exported .onnx / .xml / TorchScript file" if exported else "")
    parser.add_argument("sources", nargs="+", metavar=metavar, help=text + (f"; then {inputs}" if inputs else ""))


def split_args_sources(args: argparse.Namespace, command: str, inputs: bool = False) -> None:
    """``args.sources`` -> ``args.config``, ``args.checkpoint`` (and ``args.inputs``), told apart by file type."""
    from solov2.checkpoint.model_config import split_sources
    args.config, args.checkpoint, rest = split_sources(args.sources, command)
    if inputs and not rest:
        raise ValueError(f"solov2 {command}: no images or videos given after the checkpoint {args.checkpoint}")
    if rest and not inputs:
        raise ValueError(f"solov2 {command}: unexpected argument(s) {rest}; expected [CONFIG] CHECKPOINT")
    args.inputs = rest


def add_device(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    where = f"default: {default}" if default else "default: cuda if available, else cpu"
    parser.add_argument("--device", type=device, default=default, help=f"cpu, cuda or cuda:N ({where})")


def add_precision(parser: argparse.ArgumentParser, default: str = "auto") -> None:
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default=default,
                        help="network precision; auto: bf16 on CPUs with native bf16 (AVX512-BF16 / AMX), fp32 "
                             "elsewhere; fp16: CUDA only")


def add_backend(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=BACKENDS, default="torch",
                        help="runtime of the network: torch, or the checkpoint exported to onnxruntime (fp32) or "
                             "OpenVINO (fp32, bf16) on the CPU, same post-processing; an exported file given as "
                             "CHECKPOINT runs in its own")


def add_optimize(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-optimize", dest="optimize", action="store_false",
                        help="run the model as built (default: optimized for inference: BatchNorm folded, "
                             "channels_last, Winograd on CPU; the same results up to float rounding)")


def add_cfg_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cfg-options", nargs="+", default=None, metavar="KEY=VALUE",
                        help="config overrides a.b.c=value (Python literals); a key the config lacks is an error")

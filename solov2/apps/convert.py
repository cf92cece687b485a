"""``solov2 convert``: a checkpoint of the official SOLO code, MMDetection 3.x or AdelaiDet -> ours
(:mod:`solov2.checkpoint.convert`)."""
from __future__ import annotations

import argparse

from solov2.checkpoint.convert import SOURCES, convert_checkpoint

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source", choices=SOURCES, required=True, help="the code base that wrote INPUT")
    parser.add_argument("input", help="checkpoint of the other code base")
    parser.add_argument("output", help="where to write our checkpoint")
    parser.add_argument("--strict", action="store_true", help="fail if a key cannot be mapped (else: a warning)")
    parser.add_argument("--allow-pickle", action="store_true", help="full unpickling (trusted files only; mmengine)")


def main(args: argparse.Namespace) -> None:
    unmapped = convert_checkpoint(args.input, args.output, args.source, args.strict, args.allow_pickle)
    print(f"wrote {args.output}" + (f" ({len(unmapped)} key(s) not mapped)" if unmapped else ""))

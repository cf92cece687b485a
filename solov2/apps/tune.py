"""``solov2 tune``: measure this machine's Winograd choices for a model now (:mod:`solov2.inference.tuning`) and
print them, or forget them."""
from __future__ import annotations

import argparse
from typing import Callable

import torch

from solov2.checkpoint.model_config import resolve_model
from solov2.inference.optimize import fuse_conv_bn, to_channels_last
from solov2.inference.tuning import (
    cache_path,
    conv_input_shapes,
    load_cache,
    machine_key,
    reset_cache,
    shape_id,
    tune_winograd,
)
from solov2.inference.winograd import nnpack_available
from solov2.models import build_model

__all__ = ["add_arguments", "main", "tune_main", "DEFAULT_CONFIG"]

DEFAULT_CONFIG = "solov2_light_448_r50_fpn_2gpu_3x"  # a packaged config, found by name


def tune_main(source: str | None = None, checkpoint: str | None = None, reset: bool = False,
              all_machines: bool = False, num_threads: int | None = None,
              print_fn: Callable[[str], None] = print) -> int:
    """``solov2 tune [CONFIG|CHECKPOINT] [--reset [--all]] [--threads N]``: with ``--reset``, forget this machine's
    choices (``--all``: every machine's); then, unless only ``--reset`` was asked, measure what is missing for
    the model (default: the seed config) and print this machine's choices for its convolution shapes."""
    path = cache_path()
    if num_threads:
        torch.set_num_threads(num_threads)
    if reset:
        removed = reset_cache(all_machines, path)
        print_fn(f"removed {removed} cached tuning entr{'y' if removed == 1 else 'ies'} "
                 f"({'all machines' if all_machines else 'this CPU and torch'}) from {path}")
        if source is None:
            return 0
    if not nnpack_available():
        print_fn("this PyTorch has no NNPACK on this CPU: every convolution runs oneDNN's direct algorithm, "
                 "nothing to tune")
        return 0
    model = to_channels_last(fuse_conv_bn(build_model(resolve_model(source or DEFAULT_CONFIG, checkpoint).cfg)))
    size = model.transform.test_input_size()
    choices = tune_winograd(model, size, path, log=print_fn, when_busy="measure")
    entry = load_cache(path)["machines"][machine_key()["id"]]
    print_fn(f"{machine_key()['id']}: network input {size[0]}x{size[1]}, cache {path}")
    print_fn(f"{'conv (in x out @ map)':<24}{'convs':>6}{'direct ms':>11}{'Winograd ms':>13}  chosen")
    counts: dict[str, int] = {}
    for conv, shape in conv_input_shapes(model, size).items():
        counts[shape_id(shape)] = counts.get(shape_id(shape), 0) + 1
    for name in sorted(counts, key=lambda n: -entry["timings_ms"].get(n, [0])[0]):
        direct, wino = entry.get("timings_ms", {}).get(name, [float("nan")] * 2)
        print_fn(f"{name:<24}{counts[name]:>6}{direct:>11.2f}{wino:>13.2f}  "
                 f"{'Winograd' if entry['winograd'][name] else 'direct'}")
    print_fn(f"{sum(choices.values())} of {len(choices)} 3x3 stride-1 convs run Winograd")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sources", nargs="*", metavar="[CONFIG] [CHECKPOINT]",
                        help=f"the model to tune for (default: {DEFAULT_CONFIG})")
    parser.add_argument("--reset", action="store_true", help="forget this CPU's cached choices first (alone: only "
                        "that)")
    parser.add_argument("--all", dest="all_machines", action="store_true", help="with --reset: every machine's")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (the choices are cached per thread count)")


def main(args: argparse.Namespace) -> None:
    if len(args.sources) > 2:
        raise ValueError(f"solov2 tune: expected [CONFIG] [CHECKPOINT], got {len(args.sources)} arguments")
    source, checkpoint = (args.sources + [None, None])[:2]
    tune_main(source, checkpoint, args.reset, args.all_machines, args.threads)

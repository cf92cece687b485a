"""``solov2 eval`` (and ``tools/test.py``): a checkpoint's COCO mask AP or Cityscapes AP on a data set of its
config.

By default it evaluates the model training evaluated: float32, on the same ``data.val``, with the same
metric; only optimized for inference (BatchNorm folded, ...: the same results up to float rounding). The first
line it prints says what runs."""
from __future__ import annotations

import argparse
import json
import os

from solov2.apps.arguments import (
    add_backend,
    add_cfg_options,
    add_device,
    add_optimize,
    add_precision,
    add_sources,
    split_args_sources,
)
from solov2.engine.launch import resolve_device

__all__ = ["add_arguments", "main", "eval_main", "RunExported"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_sources(parser)
    parser.add_argument("--metric", choices=["segm", "cityscapes"], help="default: the config's, else segm")
    parser.add_argument("--metrics-out", metavar="FILE.json", help="also write the metrics to this JSON file")
    parser.add_argument("--split", default="val", choices=["train", "val", "test"], help="data.SPLIT of the config")
    add_cfg_options(parser)
    add_device(parser)
    add_precision(parser, default="fp32")
    add_optimize(parser)
    add_backend(parser)


def main(args: argparse.Namespace) -> None:
    split_args_sources(args, "eval")
    eval_main(args.config, args.checkpoint, args.metric, args.metrics_out, args.cfg_options, args.device, args.split,
              precision=args.precision, optimize=args.optimize, backend=args.backend)


def eval_main(config: str | None, checkpoint: str, metric: str | None = None, metrics_out: str | None = None,
              cfg_options=None, device: str | None = None, split: str = "val", out_dir: str | None = None,
              precision: str = "fp32", optimize: bool = True, backend: str = "torch") -> dict:
    """Evaluate a checkpoint on ``data.<split>`` (default ``val``, the set training evaluates on) of the config,
    or (``config`` None) of the config the checkpoint was trained with; ``precision``/``optimize`` evaluate the
    model as the Predictor would run it. ``backend`` ``"onnxruntime"`` / ``"openvino"`` evaluates the checkpoint
    exported to that runtime (as ``Predictor(backend=...)`` runs it). ``checkpoint`` may be an exported
    ``.onnx`` / ``.xml`` file (``solov2 export``, ``solov2 quantize``): it runs in its own runtime, and the config
    (required then: the file holds no data sets) must describe the same model."""
    import torch

    from solov2.checkpoint.model_config import ResolvedModel, check_eval_classes, load_model, resolve_model
    from solov2.data import build_dataset
    from solov2.deploy.contract import is_exported
    from solov2.deploy.runtime import check_same_model, load_exported
    from solov2.errors import ConfigError
    from solov2.evaluation.evaluator import evaluate, inference_on_dataset
    from solov2.inference.optimize import optimize_for_inference
    from solov2.inference.predictor import backend_of_file, check_backend, exported_runtime
    from solov2.precision import autocast_dtype, precision_autocast, resolve_precision
    device = resolve_device(device)
    if is_exported(checkpoint):
        if config is None:
            raise ConfigError(f"{checkpoint}: an exported model holds no data sets; give the config whose "
                              f"data.{split} to evaluate on first: solov2 eval CONFIG.py {checkpoint}")
        backend = backend_of_file(checkpoint, backend)  # a backend other than the file's: one line
        precision = resolve_precision(precision, device, backend)
        cfg = resolve_model(config, None, cfg_options).cfg
        runtime = load_exported(checkpoint, precision)
        check_same_model(runtime, cfg.model, config)
        resolved = ResolvedModel(cfg, checkpoint, {"meta": {"classes": runtime.class_names or []}},
                                 runtime.label_names, None)
        model, dtype = RunExported(runtime), None
    else:
        resolved = resolve_model(config, checkpoint, cfg_options)
        cfg = resolved.cfg
        precision = resolve_precision(precision, device, backend)
        if backend != "torch":
            check_backend(backend, device, precision)
            model, _ = load_model(cfg, resolved.ckpt, "cpu", name=checkpoint)
            model, dtype = RunExported(exported_runtime(model, backend, precision, resolved.classes)), None
        else:
            dtype = autocast_dtype(precision, device)
            model, _ = load_model(cfg, resolved.ckpt, device, name=checkpoint)
            if optimize:
                model = optimize_for_inference(model, autocast_dtype=dtype)
    if cfg.data.get(split) is None:
        raise ConfigError(f"{config or checkpoint}: data.{split} is not set; evaluate another one with --split")
    try:
        dataset = build_dataset(cfg.data[split])
    except FileNotFoundError as exc:
        if config is not None:
            raise
        raise FileNotFoundError(f"{exc} (the path {checkpoint} stores, as training saw it; give the data's place "
                                f"with --cfg-options data.{split}.KEY=PATH, or a config first)") from None
    check_eval_classes(resolved, dataset, f"data.{split}")
    metric = metric or (cfg.get("evaluation") or {}).get("metric", "segm")
    how = "optimized" if optimize and backend == "torch" else "as built"  # an exported file: its runtime
    print(f"solov2 eval: {checkpoint} on data.{split} ({len(dataset)} images, {metric}): backend {backend}, "
          f"{precision}, {how}, {device}", flush=True)
    with torch.inference_mode(), precision_autocast(dtype, device):
        encoded = inference_on_dataset(model, dataset, device)
    out_dir = out_dir or os.path.join(os.path.dirname(os.path.abspath(checkpoint)), "eval")
    metrics = evaluate(dataset, encoded, metric, out_dir)
    if metrics_out:
        os.makedirs(os.path.dirname(os.path.abspath(metrics_out)), exist_ok=True)
        with open(metrics_out, "w") as f:
            json.dump(metrics, f, indent=2)
    return metrics


class RunExported:
    """An :class:`~solov2.deploy.runtime.ExportedSOLOv2` as the module ``inference_on_dataset`` runs: ``model(images)``
    -> the model's raw results (every instance the graph's own thresholds keep, as the PyTorch model gives)."""

    training = False

    def __init__(self, runtime):
        self.runtime = runtime

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self

    def __call__(self, images):
        return self.runtime([image.cpu() for image in images])

"""``solov2 eval`` (and ``tools/test.py``): a checkpoint's COCO mask AP or Cityscapes AP on a data set of its
config."""
from __future__ import annotations

import json
import os

from ..engine.launch import resolve_device

__all__ = ["eval_main"]


def eval_main(config: str | None, checkpoint: str, metric: str | None = None, metrics_out: str | None = None,
              cfg_options=None, device: str | None = None, split: str = "val", out_dir: str | None = None,
              precision: str = "auto", optimize: bool = False) -> dict:
    """Evaluate a checkpoint on ``data.<split>`` (default ``val``, the set training evaluates on) of the config,
    or (``config`` None) of the config the checkpoint was trained with; ``precision``/``optimize`` evaluate the
    model as the Predictor would run it."""
    import torch
    from ..checkpoint_config import check_eval_classes, resolve_model
    from ..config import ConfigError
    from ..data import build_dataset
    from ..engine.evaluate import evaluate, inference_on_dataset
    from ..predictor import autocast_dtype, load_model, precision_autocast
    resolved = resolve_model(config, checkpoint, cfg_options)
    cfg = resolved.cfg
    device = resolve_device(device)
    dtype = autocast_dtype(precision, device)
    model, _ = load_model(cfg, resolved.ckpt, device, optimize, name=checkpoint)
    if cfg.data.get(split) is None:
        raise ConfigError(f"{config or checkpoint}: data.{split} is not set; evaluate another one with --split")
    dataset = build_dataset(cfg.data[split])
    check_eval_classes(resolved, dataset, f"data.{split}")
    metric = metric or (cfg.get("evaluation") or {}).get("metric", "segm")
    with torch.inference_mode(), precision_autocast(dtype, device):
        encoded = inference_on_dataset(model, dataset, device)
    out_dir = out_dir or os.path.join(os.path.dirname(os.path.abspath(checkpoint)), "eval")
    metrics = evaluate(dataset, encoded, metric, out_dir)
    if metrics_out:
        os.makedirs(os.path.dirname(os.path.abspath(metrics_out)), exist_ok=True)
        with open(metrics_out, "w") as f:
            json.dump(metrics, f, indent=2)
    return metrics

"""``solov2 configs``: the configs that ship with the package, one line each (name, model, data set), so that
``solov2 train NAME`` / ``check-data NAME`` / ``Predictor(NAME, ...)`` can name them."""
from __future__ import annotations

import argparse

from solov2.config import find_config, load_config, packaged_configs

__all__ = ["add_arguments", "main", "describe"]


def describe(name: str) -> dict[str, str]:
    """``{"name", "model", "data", "path"}`` of a packaged config: the backbone and head, and the training set."""
    cfg = load_config(find_config(name))
    model = cfg.get("model") or {}
    backbone = model.get("backbone") or {}
    depth = backbone.get("depth", "")
    kind = {"ResNeXt": "X", "ResNet": "R"}.get(backbone.get("type", "ResNet"), backbone.get("type", ""))
    dcn = "-DCN" if backbone.get("dcn") else ""
    head = "SOLOv2-light" if "light" in name else "SOLOv2"
    scale = (model.get("transform") or {}).get("test_scale")
    train = (cfg.get("data") or {}).get("train") or {}
    classes = (model.get("bbox_head") or {}).get("num_classes")
    return {"name": name, "path": str(packaged_configs()[name]),
            "model": f"{head} {kind}{depth}{dcn}-FPN" + (f", test {scale[1]} px" if scale else ""),
            "data": f"{train.get('type', '?')} ({classes} classes)"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--paths", action="store_true", help="also print each config's file")


def main(args: argparse.Namespace) -> None:
    rows = [describe(name) for name in packaged_configs()]
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['model']:<36} {r['data']}" + (f"  {r['path']}" if args.paths else ""))

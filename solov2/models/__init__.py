"""Model construction from a config: a small dict maps each ``type`` name to its class."""
from __future__ import annotations

import inspect
from typing import Any

from ..config import ConfigError
from ..postprocess import TestConfig
from .backbone import ResNet
from .layers import ConvModule
from .fpn import FPN
from .mask_feat_head import MaskFeatHead
from .solov2 import SOLOv2
from .solov2_head import SOLOv2Head
from .transform import ImageTransform

__all__ = ["build_model", "SOLOv2", "ResNet", "FPN", "MaskFeatHead", "SOLOv2Head", "ConvModule"]

COMPONENTS = {"ResNet": ResNet, "FPN": FPN, "MaskFeatHead": MaskFeatHead, "SOLOv2Head": SOLOv2Head}


def _construct(cls, kwargs: dict, where: str, skip: tuple[str, ...] = ()):
    params = inspect.signature(cls.__init__).parameters
    unknown = sorted(k for k in kwargs if k not in params or k in skip)
    if unknown:
        allowed = sorted(k for k in params if k not in ("self", *skip))
        raise ConfigError(f"{where}: unknown key(s) {unknown} for {cls.__name__}; allowed: {allowed}")
    return cls(**kwargs)


def _build_part(cfg: dict, where: str, expected: str):
    cfg = dict(cfg)
    type_name = cfg.pop("type", expected)
    if type_name not in COMPONENTS:
        raise ConfigError(f"{where}.type: unknown type {type_name!r}; known: {sorted(COMPONENTS)}")
    return _construct(COMPONENTS[type_name], cfg, where)


def build_model(cfg: Any) -> SOLOv2:
    """Build the network described by ``cfg.model`` (or by ``cfg`` itself if it is the model dict).

    Keys of ``model``: ``backbone``, ``neck``, ``mask_feat_head``, ``bbox_head`` (each a dict with a
    ``type`` and the class's keyword arguments), ``transform`` (:class:`ImageTransform` arguments),
    ``test_cfg`` (:class:`TestConfig` fields), optional ``type='SOLOv2'`` and ``pretrained`` (a local path
    of torchvision ImageNet weights for the backbone). An unknown key raises :class:`ConfigError`.
    """
    model_cfg = dict(cfg["model"] if "model" in cfg else cfg)
    if model_cfg.pop("type", "SOLOv2") != "SOLOv2":
        raise ConfigError("model.type: only 'SOLOv2' is supported")
    known = {"backbone", "neck", "mask_feat_head", "bbox_head", "transform", "test_cfg", "pretrained"}
    unknown = sorted(set(model_cfg) - known)
    if unknown:
        raise ConfigError(f"model: unknown key(s) {unknown}; allowed: {sorted(known)}")
    for part in ("backbone", "neck", "mask_feat_head", "bbox_head"):
        if part not in model_cfg:
            raise ConfigError(f"model.{part}: missing")
    backbone_cfg = dict(model_cfg["backbone"])
    if model_cfg.get("pretrained"):
        backbone_cfg["pretrained"] = model_cfg["pretrained"]
    transform_cfg = {k: (tuple(v) if isinstance(v, list) and k != "train_scales" else v)
                     for k, v in dict(model_cfg.get("transform", {})).items()}
    if "train_scales" in transform_cfg:
        transform_cfg["train_scales"] = [tuple(s) for s in transform_cfg["train_scales"]]
    return SOLOv2(
        backbone=_build_part(backbone_cfg, "model.backbone", "ResNet"),
        neck=_build_part(model_cfg["neck"], "model.neck", "FPN"),
        mask_feat_head=_build_part(model_cfg["mask_feat_head"], "model.mask_feat_head", "MaskFeatHead"),
        bbox_head=_build_part(model_cfg["bbox_head"], "model.bbox_head", "SOLOv2Head"),
        transform=_construct(ImageTransform, transform_cfg, "model.transform"),
        test_cfg=_construct(TestConfig, dict(model_cfg.get("test_cfg", {})), "model.test_cfg"),
    )

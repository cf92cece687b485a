"""Model construction from a config: a small dict maps each ``type`` name to its class."""
from __future__ import annotations

import inspect
import logging
import os
from typing import Any

from solov2.config import check_keys
from solov2.errors import ConfigError
from solov2.models.backbone import ResNet, ResNeXt
from solov2.models.fpn import FPN
from solov2.models.layers import ConvModule
from solov2.models.mask_feat_head import MaskFeatHead
from solov2.models.solov2 import SOLOv2
from solov2.models.solov2_head import SOLOv2Head, SOLOv2LightHead
from solov2.models.transform import ImageTransform, transform_fields
from solov2.postprocess import TestConfig

__all__ = ["build_model", "init_backbone_for_training", "head_scale_ranges",
           "SOLOv2", "ResNet", "FPN", "MaskFeatHead", "SOLOv2Head",
           "ConvModule"]

COMPONENTS = {"ResNet": ResNet, "ResNeXt": ResNeXt, "FPN": FPN, "MaskFeatHead": MaskFeatHead,
              "SOLOv2Head": SOLOv2Head, "SOLOv2LightHead": SOLOv2LightHead}


def _construct(cls, kwargs: dict, where: str, skip: tuple[str, ...] = ()):
    check_keys(cls, kwargs, where, skip)
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
    ``test_cfg`` (:class:`TestConfig` fields), optional ``type='SOLOv2'`` and ``pretrained`` (the backbone's
    ImageNet weights: ``'torchvision://resnet50'`` or a local path; only remembered, never read here: see
    :func:`init_backbone_for_training`). An unknown key raises :class:`ConfigError`.
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
    transform_cfg = transform_fields(model_cfg.get("transform", {}))
    return SOLOv2(
        backbone=_build_part(backbone_cfg, "model.backbone", "ResNet"),
        neck=_build_part(model_cfg["neck"], "model.neck", "FPN"),
        mask_feat_head=_build_part(model_cfg["mask_feat_head"], "model.mask_feat_head", "MaskFeatHead"),
        bbox_head=_build_part(model_cfg["bbox_head"], "model.bbox_head", "SOLOv2Head"),
        transform=_construct(ImageTransform, transform_cfg, "model.transform"),
        test_cfg=_construct(TestConfig, dict(model_cfg.get("test_cfg", {})), "model.test_cfg"),
    )


def init_backbone_for_training(model: SOLOv2, resume: str | None = None, load_from: str | None = None) -> None:
    """What the backbone starts training from; called by the Trainer after building the model, before the optimizer.

    As the official code (``model.init_weights(pretrained)`` in its train script), the ImageNet weights of
    ``model.pretrained`` are loaded only when training starts without a detector checkpoint (no ``resume``,
    no ``load_from``): a checkpoint overwrites them anyway, and inference never needs them.
    Without ImageNet weights and without ``load_from`` the backbone is random, so ``frozen_stages`` and
    ``norm_eval`` would keep random layers and BatchNorm statistics fixed for good: every layer is trained
    instead. That choice depends only on the config, so a resumed run makes the same one (and its optimizer
    gets the same parameters).
    """
    backbone = model.backbone
    log = logging.getLogger("solov2")
    if not backbone.pretrained:
        if load_from:
            return  # the detector checkpoint holds trained backbone weights: the config's freezing applies
        configured = f"frozen_stages={backbone.frozen_stages} and norm_eval={backbone.norm_eval}"
        unchanged = backbone.frozen_stages < 0 and not backbone.norm_eval
        backbone.train_every_layer()
        log.info("no ImageNet weights (model.pretrained=None): training every backbone layer, "
                 "BatchNorm statistics updated%s", "" if unchanged else f" ({configured} of the config not applied)")
        return
    if resume or load_from:
        return
    path = _once_per_node(backbone.load_pretrained)
    log.info("backbone: ImageNet weights %s (%s)", backbone.pretrained, path)


def _once_per_node(load):
    """``load()`` on every process, the first process of each machine first: it downloads a missing
    ``torchvision://`` file into the cache while the others wait, then they read it (not N downloads)."""
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return load()
    first = int(os.environ.get("LOCAL_RANK", dist.get_rank())) == 0
    if not first:
        dist.barrier()
    try:
        return load()
    finally:  # also on an error, so the others are not left waiting (they then fail the same way)
        if first:
            dist.barrier()


def head_scale_ranges(cfg) -> list[tuple[float, float]] | str:
    """``model.bbox_head.scale_ranges`` of a config, or ``SOLOv2Head``'s default when the config has none;
    ``"auto"`` (fitted to the training data when training starts) as it is."""
    head = (cfg.get("model") or {}).get("bbox_head") or {}
    ranges = head.get("scale_ranges")
    if ranges == "auto":
        return "auto"
    if ranges is None:
        ranges = inspect.signature(SOLOv2Head.__init__).parameters["scale_ranges"].default
    return [tuple(float(v) for v in r) for r in ranges]

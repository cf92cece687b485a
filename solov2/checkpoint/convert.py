"""Convert SOLOv2 checkpoints of other code bases to ours (official SOLO key names), and back.

Sources (``source`` argument):

* ``"solo"``: the official SOLO repository (mmdet 1.x). Its names are ours; only ``module.`` prefixes are
  stripped and keys outside the SOLOv2 layout are reported.
* ``"mmdet"``: MMDetection 3.x (and 2.x) ``SOLOv2`` with a ``SOLOV2Head``: ``mask_head.cls_convs``,
  ``mask_head.conv_cls``, ``mask_head.mask_feature_head.convs_all_levels``... The backbone and neck keep
  torchvision / mmdet names, which are ours.
* ``"adelaidet"``: AdelaiDet's detectron2 ``SOLOv2``: ``backbone.bottom_up.res2..5``, ``backbone.fpn_lateral2``,
  ``ins_head.cate_tower``, ``mask_head.conv_pred``...

Conversion is a pure renaming, driven by one table of template pairs per source. A key that no template
matches is returned in ``unmapped`` and named in a warning (or an error with ``strict=True``); it is never
dropped silently. The same tables give the inverse mapping (ours -> source), used by the round-trip tests.

Renaming does not change what the weights mean: AdelaiDet's released models are trained from detectron2's
MSRA ResNet (BGR input, std 1, stride on the 1x1 conv of a bottleneck). Run a converted AdelaiDet checkpoint
with ``configs/solov2/coco/solov2_r50_fpn_3x_adelaidet.py``, which sets those conventions
(``backbone.style='caffe'``, ``transform.bgr=True``, mean/std); with the torchvision-style configs it loads
but computes something else.

Command line: ``python -m solov2.checkpoint.convert --from mmdet in.pth out.pth``.
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from solov2.checkpoint.io import atomic_save
from solov2.errors import CheckpointError, one_line

__all__ = ["SOURCES", "convert_state_dict", "convert_to_source", "convert_checkpoint"]

SOURCES = ("solo", "mmdet", "adelaidet")

# What each placeholder of a template may match.
_FIELDS = {
    "wb": r"weight|bias",
    "bn": r"weight|bias|running_mean|running_var|num_batches_tracked",
}
_INT = r"\d+"

IntMap = Callable[[int], "int | None"]


@dataclass
class _Rule:
    """``ours`` <-> ``theirs`` key templates; ``maps[field] = (to_theirs, to_ours)`` renumbers an int field
    (returning None when a number has no counterpart, e.g. a ReLU's index in a detectron2 tower)."""

    ours: str
    theirs: str
    maps: dict[str, tuple[IntMap, IntMap]] = field(default_factory=dict)

    def __post_init__(self):
        self._ours_re = _compile(self.ours)
        self._theirs_re = _compile(self.theirs)

    def apply(self, key: str, to_ours: bool) -> str | None:
        """The renamed key, or None if ``key`` does not fit this rule."""
        m = (self._theirs_re if to_ours else self._ours_re).fullmatch(key)
        if m is None:
            return None
        values = dict(m.groupdict())
        for name, (fwd, inv) in self.maps.items():
            new = (inv if to_ours else fwd)(int(values[name]))
            if new is None:
                return None
            values[name] = str(new)
        return (self.ours if to_ours else self.theirs).format(**values)


def _compile(template: str) -> re.Pattern:
    parts = re.split(r"\{(\w+)\}", template)  # literal, name, literal, name, ..., literal
    regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>{_FIELDS.get(p, _INT)})"
                    for i, p in enumerate(parts))
    return re.compile(regex)


def _shift(n: int) -> tuple[IntMap, IntMap]:
    """ours ``i`` <-> theirs ``i + n`` (ResNet ``layer1`` is detectron2's ``res2``, FPN level 0 is ``fpn_*2``)."""
    return (lambda i: i + n), (lambda j: j - n if j >= n else None)


def _tower(offset: int) -> tuple[IntMap, IntMap]:
    """ours block ``i`` <-> index ``3 i + offset`` of a detectron2 ``Sequential(conv, GN, ReLU, conv, ...)``."""
    return (lambda i: 3 * i + offset), (lambda j: (j - offset) // 3 if j >= offset and (j - offset) % 3 == 0
                                        else None)


# Every parameter and buffer name of our SOLOv2 (ResNet + FPN + MaskFeatHead + SOLOv2Head).
_BACKBONE = [
    "backbone.conv1.weight",
    "backbone.bn1.{bn}",
    "backbone.layer{s}.{b}.conv{c}.weight",
    "backbone.layer{s}.{b}.conv2.conv_offset.{wb}",  # DCN models (same name in mmcv's deformable packs)
    "backbone.layer{s}.{b}.bn{c}.{bn}",
    "backbone.layer{s}.{b}.downsample.0.weight",
    "backbone.layer{s}.{b}.downsample.1.{bn}",
]
_NECK = ["neck.lateral_convs.{i}.conv.{wb}", "neck.fpn_convs.{i}.conv.{wb}"]
_OURS = _BACKBONE + _NECK + [
    "mask_feat_head.convs_all_levels.{i}.conv{j}.conv.weight",
    "mask_feat_head.convs_all_levels.{i}.conv{j}.conv.conv_offset.{wb}",
    "mask_feat_head.convs_all_levels.{i}.conv{j}.gn.{wb}",
    "mask_feat_head.conv_pred.0.conv.weight",
    "mask_feat_head.conv_pred.0.conv.conv_offset.{wb}",
    "mask_feat_head.conv_pred.0.gn.{wb}",
    "bbox_head.cate_convs.{i}.conv.weight",
    "bbox_head.cate_convs.{i}.conv.conv_offset.{wb}",
    "bbox_head.cate_convs.{i}.gn.{wb}",
    "bbox_head.kernel_convs.{i}.conv.weight",
    "bbox_head.kernel_convs.{i}.conv.conv_offset.{wb}",
    "bbox_head.kernel_convs.{i}.gn.{wb}",
    "bbox_head.solo_cate.{wb}",
    "bbox_head.solo_kernel.{wb}",
]

_RULES: dict[str, list[_Rule]] = {
    "solo": [_Rule(t, t) for t in _OURS],
    # mmdet: mmcv ConvModule names its GroupNorm ``gn``; MaskFeatModule.conv_pred is a bare ConvModule.
    "mmdet": [_Rule(t, t) for t in _BACKBONE + _NECK] + [
        _Rule("mask_feat_head.convs_all_levels.{i}.conv{j}.conv.weight",
              "mask_head.mask_feature_head.convs_all_levels.{i}.conv{j}.conv.weight"),
        _Rule("mask_feat_head.convs_all_levels.{i}.conv{j}.gn.{wb}",
              "mask_head.mask_feature_head.convs_all_levels.{i}.conv{j}.gn.{wb}"),
        _Rule("mask_feat_head.conv_pred.0.conv.weight", "mask_head.mask_feature_head.conv_pred.conv.weight"),
        _Rule("mask_feat_head.conv_pred.0.gn.{wb}", "mask_head.mask_feature_head.conv_pred.gn.{wb}"),
        _Rule("bbox_head.cate_convs.{i}.conv.weight", "mask_head.cls_convs.{i}.conv.weight"),
        _Rule("bbox_head.cate_convs.{i}.gn.{wb}", "mask_head.cls_convs.{i}.gn.{wb}"),
        _Rule("bbox_head.kernel_convs.{i}.conv.weight", "mask_head.kernel_convs.{i}.conv.weight"),
        _Rule("bbox_head.kernel_convs.{i}.gn.{wb}", "mask_head.kernel_convs.{i}.gn.{wb}"),
        # DCN models (mmcv's ModulatedDeformConv2dPack keeps the official conv_offset name)
        _Rule("mask_feat_head.convs_all_levels.{i}.conv{j}.conv.conv_offset.{wb}",
              "mask_head.mask_feature_head.convs_all_levels.{i}.conv{j}.conv.conv_offset.{wb}"),
        _Rule("mask_feat_head.conv_pred.0.conv.conv_offset.{wb}",
              "mask_head.mask_feature_head.conv_pred.conv.conv_offset.{wb}"),
        _Rule("bbox_head.cate_convs.{i}.conv.conv_offset.{wb}", "mask_head.cls_convs.{i}.conv.conv_offset.{wb}"),
        _Rule("bbox_head.kernel_convs.{i}.conv.conv_offset.{wb}", "mask_head.kernel_convs.{i}.conv.conv_offset.{wb}"),
        _Rule("bbox_head.solo_cate.{wb}", "mask_head.conv_cls.{wb}"),
        _Rule("bbox_head.solo_kernel.{wb}", "mask_head.conv_kernel.{wb}"),
    ],
    # AdelaiDet: detectron2 Conv2d carries its norm as ``.norm``; towers are Sequential(conv, GN, ReLU) * n.
    "adelaidet": [
        _Rule("backbone.conv1.weight", "backbone.bottom_up.stem.conv1.weight"),
        _Rule("backbone.bn1.{bn}", "backbone.bottom_up.stem.conv1.norm.{bn}"),
        _Rule("backbone.layer{s}.{b}.conv{c}.weight", "backbone.bottom_up.res{s}.{b}.conv{c}.weight",
              {"s": _shift(1)}),
        _Rule("backbone.layer{s}.{b}.bn{c}.{bn}", "backbone.bottom_up.res{s}.{b}.conv{c}.norm.{bn}",
              {"s": _shift(1)}),
        _Rule("backbone.layer{s}.{b}.downsample.0.weight", "backbone.bottom_up.res{s}.{b}.shortcut.weight",
              {"s": _shift(1)}),
        _Rule("backbone.layer{s}.{b}.downsample.1.{bn}", "backbone.bottom_up.res{s}.{b}.shortcut.norm.{bn}",
              {"s": _shift(1)}),
        _Rule("neck.lateral_convs.{i}.conv.{wb}", "backbone.fpn_lateral{i}.{wb}", {"i": _shift(2)}),
        _Rule("neck.fpn_convs.{i}.conv.{wb}", "backbone.fpn_output{i}.{wb}", {"i": _shift(2)}),
        _Rule("mask_feat_head.convs_all_levels.{i}.conv{j}.conv.weight",
              "mask_head.convs_all_levels.{i}.conv{j}.0.weight"),
        _Rule("mask_feat_head.convs_all_levels.{i}.conv{j}.gn.{wb}", "mask_head.convs_all_levels.{i}.conv{j}.1.{wb}"),
        _Rule("mask_feat_head.conv_pred.0.conv.weight", "mask_head.conv_pred.0.weight"),
        _Rule("mask_feat_head.conv_pred.0.gn.{wb}", "mask_head.conv_pred.1.{wb}"),
        _Rule("bbox_head.cate_convs.{i}.conv.weight", "ins_head.cate_tower.{i}.weight", {"i": _tower(0)}),
        _Rule("bbox_head.cate_convs.{i}.gn.{wb}", "ins_head.cate_tower.{i}.{wb}", {"i": _tower(1)}),
        _Rule("bbox_head.kernel_convs.{i}.conv.weight", "ins_head.kernel_tower.{i}.weight", {"i": _tower(0)}),
        _Rule("bbox_head.kernel_convs.{i}.gn.{wb}", "ins_head.kernel_tower.{i}.{wb}", {"i": _tower(1)}),
        _Rule("bbox_head.solo_cate.{wb}", "ins_head.cate_pred.{wb}"),
        _Rule("bbox_head.solo_kernel.{wb}", "ins_head.kernel_pred.{wb}"),
    ],
}


def _check_source(source: str) -> list[_Rule]:
    if source not in _RULES:
        raise ValueError(f"unknown checkpoint source {source!r}; expected one of {list(SOURCES)}")
    return _RULES[source]


def _rename(state_dict: dict[str, Tensor], rules: list[_Rule], to_ours: bool
            ) -> tuple[dict[str, Tensor], list[str]]:
    converted, unmapped = {}, []
    for key, value in state_dict.items():
        new = next((n for n in (r.apply(key, to_ours) for r in rules) if n is not None), None)
        if new is None:
            unmapped.append(key)
        elif new in converted:
            raise ValueError(f"two checkpoint keys map to {new!r} (the second is {key!r})")
        else:
            converted[new] = value
    return converted, unmapped


def convert_state_dict(state_dict: dict[str, Tensor], source: str) -> tuple[dict[str, Tensor], list[str]]:
    """Rename a ``source`` state_dict to our key names.

    Args:
        state_dict: the other code base's weights; ``module.`` prefixes (DistributedDataParallel) are removed.
        source: ``"solo"``, ``"mmdet"`` or ``"adelaidet"``.
    Returns: ``(converted, unmapped_keys)``: tensors are the same objects (no copy), in the input's order.
        BatchNorm layers that come without ``num_batches_tracked`` (detectron2's FrozenBatchNorm2d) get a
        zero counter, the value a freshly built model has, so that the result loads with ``strict=True``.
    """
    rules = _check_source(source)
    state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
    converted, unmapped = _rename(state_dict, rules, to_ours=True)
    for key in [k for k in converted if k.endswith(".running_mean")]:
        counter = key.removesuffix("running_mean") + "num_batches_tracked"
        converted.setdefault(counter, torch.tensor(0, dtype=torch.long))
    return converted, unmapped


def convert_to_source(state_dict: dict[str, Tensor], source: str) -> tuple[dict[str, Tensor], list[str]]:
    """The inverse of :func:`convert_state_dict`: our key names -> ``source``'s. Returns ``(converted, unmapped)``.

    ``num_batches_tracked`` counters are kept (detectron2 ignores them when its BatchNorm is frozen), so that
    ours -> source -> ours gives back exactly the same state_dict.
    """
    return _rename(state_dict, _check_source(source), to_ours=False)


def _read_any_checkpoint(path: str, allow_pickle: bool) -> tuple[dict[str, Tensor], dict]:
    """``(state_dict, original top-level dict)`` of an mmdet (``state_dict``), detectron2 (``model``) or bare file."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except Exception as exc:
        hint = "" if allow_pickle else "; if you trust the file, retry with allow_pickle=True (--allow-pickle)"
        raise CheckpointError(f"{path}: cannot read checkpoint ({one_line(exc)}){hint}") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a checkpoint (got {type(ckpt).__name__})")
    state = ckpt.get("state_dict", ckpt.get("model", ckpt))
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{path}: no 'state_dict' or 'model' entry with weights")
    try:  # detectron2 .pkl files hold numpy arrays
        state = {k: v if isinstance(v, Tensor) else torch.as_tensor(v) for k, v in state.items()}
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: entries that are not tensors in the state_dict ({exc})") from None
    return state, ckpt


def _classes_of(ckpt: dict) -> list[str] | None:
    """Class names stored by mmdet 2.x (``meta.CLASSES``) or 3.x (``meta.dataset_meta.classes``), if any."""
    meta = ckpt.get("meta") if isinstance(ckpt.get("meta"), dict) else {}
    classes = meta.get("classes") or meta.get("CLASSES") or (meta.get("dataset_meta") or {}).get("classes")
    return [str(c) for c in classes] if classes else None


def convert_checkpoint(in_path: str, out_path: str, source: str, strict: bool = False,
                       allow_pickle: bool = False) -> list[str]:
    """Read ``in_path`` (a ``source`` checkpoint), write ``out_path`` in our checkpoint format.

    Args:
        strict: raise :class:`CheckpointError` if any key cannot be mapped (else: one-line warning).
        allow_pickle: read with full unpickling. Only for trusted files: mmengine checkpoints may hold
            objects that ``torch.load(weights_only=True)`` refuses.
    Returns: the unmapped keys (not written to ``out_path``).
    """
    state, ckpt = _read_any_checkpoint(in_path, allow_pickle)
    converted, unmapped = convert_state_dict(state, source)
    if not converted:
        raise CheckpointError(f"{in_path}: no key matches the {source!r} SOLOv2 layout; wrong --from?")
    if unmapped:
        more = f" (+{len(unmapped) - 10} more)" if len(unmapped) > 10 else ""
        msg = (f"{in_path}: {len(unmapped)} key(s) not mapped from {source!r} and not written: "
               f"{', '.join(unmapped[:10])}{more}")
        if strict:
            raise CheckpointError(msg)
        warnings.warn(msg, stacklevel=2)
    meta = {"converted_from": source, "source_checkpoint": os.path.basename(in_path)}
    classes = _classes_of(ckpt)
    if classes:
        meta["classes"] = classes
    atomic_save({"state_dict": converted, "meta": meta}, out_path)
    return unmapped

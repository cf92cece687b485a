"""Augmentation for small training sets: Simple Copy-Paste and large-scale jitter (Ghiasi et al., "Simple
Copy-Paste is a Strong Data Augmentation Method for Instance Segmentation", CVPR 2021).

Both work on one data set item, ``(image, target)``: ``image`` ``(3, H, W)`` uint8 RGB, ``target`` with
``masks`` ``(N, H, W)`` bool and ``labels`` ``(N,)`` int64 (the rest of the dict is carried over). The targets
hold no boxes or areas (the model derives them from the masks), so updating the masks updates everything.

:class:`AugmentedDataset` applies them to a data set; :func:`solov2.data.build_dataset` builds it from the
train set's ``augment`` key, e.g. ``data.train.augment=dict(copy_paste=0.5, lsj=dict(size=(128, 128)))``.
All randomness comes from a NumPy ``Generator`` seeded from NumPy's global generator, which the trainer
seeds per sample from (run seed, epoch, index) (``solov2.engine.rng.SeededSamples``): a resumed run draws the
same augmentations as an uninterrupted one.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from solov2.errors import ConfigError

__all__ = ["copy_paste", "large_scale_jitter", "resize_crop", "AugmentedDataset", "PAD_VALUE", "resolve_lsj_size",
           "resolve_scales"]

# The augment keys that are the model's (raised by resolve_scales), not AugmentedDataset's.
MODEL_SCALE_KEYS = ("min_train_scale", "min_test_scale")

# The padding colour of large-scale jitter: ImageNet's mean RGB, which the model's normalization maps to 0 (the
# value the model pads its batches with), so jitter's padding looks like the model's own.
PAD_VALUE = (124, 116, 104)


def _keep(target: dict, masks: Tensor, keep: Tensor, labels: Tensor | None = None) -> dict:
    labels = target["labels"] if labels is None else labels
    return {**target, "masks": masks[keep], "labels": labels[keep]}


def copy_paste(image: Tensor, target: dict, src_image: Tensor, src_target: dict, rng: np.random.Generator,
               min_visible: int = 16) -> tuple[Tensor, dict]:
    """Paste a random non-empty subset of ``src_image``'s instances onto ``image``.

    The pasted pixels cover ``image`` and cut the masks under them; an instance of ``target`` that lost pixels
    and has fewer than ``min_visible`` left is dropped (one that lost none is kept whatever its size). The
    pasted instances come after the kept ones, with their labels. A source of another size is resized to
    ``image``'s (bilinear image, nearest masks) first. A source without instances returns the inputs unchanged;
    an image without instances receives the pasted ones.

    Args:
        image, src_image: ``(3, H, W)`` / ``(3, H', W')`` uint8.
        target, src_target: ``masks`` ``(N, H, W)`` / ``(M, H', W')`` bool, ``labels`` ``(N,)`` / ``(M,)`` int64.
        rng: draws the subset.
        min_visible: pixels an occluded instance must keep.

    Returns:
        ``(image, target)``: ``(3, H, W)`` uint8 and ``target`` with new ``masks`` and ``labels``.
    """
    src_masks = src_target["masks"].bool()
    if len(src_masks) == 0:
        return image, target
    h, w = image.shape[-2:]
    if tuple(src_image.shape[-2:]) != (h, w):
        src_image = F.interpolate(src_image[None].float(), size=(h, w), mode="bilinear",
                                  align_corners=False)[0].round().clamp(0, 255).to(image.dtype)
        src_masks = F.interpolate(src_masks[None].float(), size=(h, w), mode="nearest")[0] > 0.5
    count = int(rng.integers(1, len(src_masks) + 1))
    chosen = torch.from_numpy(np.sort(rng.choice(len(src_masks), size=count, replace=False)))
    pasted, pasted_labels = src_masks[chosen], src_target["labels"][chosen]
    keep = pasted.flatten(1).any(1)  # a mask can vanish in the resize above
    pasted, pasted_labels = pasted[keep], pasted_labels[keep]
    if len(pasted) == 0:
        return image, target
    alpha = pasted.any(0)  # (H, W): where the source covers the image
    out = torch.where(alpha, src_image, image)
    masks = target["masks"].bool()
    cut = masks & ~alpha
    before, after = masks.flatten(1).sum(1), cut.flatten(1).sum(1)
    kept = (after > 0) & ((after == before) | (after >= min_visible))
    return out, {**target, "masks": torch.cat([cut[kept], pasted]),
                 "labels": torch.cat([target["labels"][kept], pasted_labels.to(target["labels"].dtype)])}


def resize_crop(image: Tensor, target: dict, factor: float, size: tuple[int, int], offset: tuple[int, int],
                pad_value: tuple[int, int, int] = PAD_VALUE) -> tuple[Tensor, dict]:
    """Resize by ``factor`` (image bilinear, masks nearest), then cut the window ``size`` ``(h, w)`` starting
    at ``offset`` ``(y, x)`` of the resized image; where the window reaches past the resized image it is
    padded with ``pad_value`` (masks with False). Instances with no pixel left are dropped.

    ``image`` ``(3, H, W)`` uint8, ``target["masks"]`` ``(N, H, W)`` bool -> ``(3, h, w)`` uint8 and
    ``(N', h, w)`` bool masks with their labels; ``orig_size`` becomes ``(h, w)``.
    """
    h, w = image.shape[-2:]
    rh, rw = max(1, round(h * factor)), max(1, round(w * factor))
    if (rh, rw) != (h, w):
        image = F.interpolate(image[None].float(), size=(rh, rw), mode="bilinear", align_corners=False,
                              antialias=factor < 1)[0].round().clamp(0, 255).to(torch.uint8)
    masks = target["masks"].bool()
    if (rh, rw) != (h, w) and len(masks):
        masks = F.interpolate(masks[None].float(), size=(rh, rw), mode="nearest")[0] > 0.5
    elif (rh, rw) != (h, w):
        masks = torch.zeros((0, rh, rw), dtype=torch.bool)
    out_h, out_w = size
    y, x = offset
    canvas = torch.tensor(pad_value, dtype=torch.uint8).view(3, 1, 1).repeat(1, out_h, out_w)
    out_masks = torch.zeros((len(masks), out_h, out_w), dtype=torch.bool)
    # The overlap of the window [y, y + out_h) x [x, x + out_w) with the resized image [0, rh) x [0, rw).
    y0, y1, x0, x1 = max(y, 0), min(y + out_h, rh), max(x, 0), min(x + out_w, rw)
    if y1 > y0 and x1 > x0:
        canvas[:, y0 - y:y1 - y, x0 - x:x1 - x] = image[:, y0:y1, x0:x1]
        out_masks[:, y0 - y:y1 - y, x0 - x:x1 - x] = masks[:, y0:y1, x0:x1]
    keep = out_masks.flatten(1).any(1)
    return canvas, {**_keep(target, out_masks, keep), "orig_size": (int(out_h), int(out_w))}


def large_scale_jitter(image: Tensor, target: dict, rng: np.random.Generator, size: tuple[int, int] = (1024, 1024),
                       scale: tuple[float, float] = (0.1, 2.0)) -> tuple[Tensor, dict]:
    """Large-scale jitter: resize the image (keeping its aspect ratio) so that it fits ``size`` ``(h, w)`` times
    a factor drawn uniformly from ``scale``, then crop a random ``size`` window (larger) or pad at the bottom and
    right (smaller). Shapes as :func:`resize_crop`, which does the work."""
    h, w = image.shape[-2:]
    factor = min(size[0] / h, size[1] / w) * float(rng.uniform(*scale))
    rh, rw = max(1, round(h * factor)), max(1, round(w * factor))
    y = int(rng.integers(0, rh - size[0] + 1)) if rh > size[0] else 0
    x = int(rng.integers(0, rw - size[1] + 1)) if rw > size[1] else 0
    return resize_crop(image, target, factor, tuple(size), (y, x))


class AugmentedDataset(Dataset):
    """``dataset`` with large-scale jitter and/or copy-paste applied to every item; everything else (``CLASSES``,
    ``coco``, ``img_ids``, ...) is ``dataset``'s.

    Item ``i``: with ``lsj``, jitter it; with probability ``copy_paste``, load a random other item, jitter it
    (independently) and paste a random subset of its instances onto item ``i``. The randomness is drawn from
    NumPy's global generator (one draw, seeding a private ``Generator``), which training seeds per sample.

    Args:
        dataset: items ``(image (3, H, W) uint8, target with masks (N, H, W) bool and labels (N,))``.
        copy_paste: probability of pasting (0: never).
        lsj: ``dict(size=(h, w), scale=(lo, hi))`` for :func:`large_scale_jitter`, or None (no jitter).
        min_visible: see :func:`copy_paste`.
    """

    def __init__(self, dataset: Dataset, copy_paste: float = 0.0, lsj: dict | None = None, min_visible: int = 16):
        if not 0.0 <= float(copy_paste) <= 1.0:
            raise ConfigError(f"data.train.augment.copy_paste: a probability in [0, 1], got {copy_paste!r}")
        if lsj is not None:
            unknown = set(lsj) - {"size", "scale"}
            if unknown or "size" not in lsj:
                raise ConfigError(f"data.train.augment.lsj: expected dict(size=(h, w), scale=(lo, hi)), got {lsj!r}")
            size = lsj["size"]
            size = (int(size), int(size)) if isinstance(size, (int, float)) else tuple(int(s) for s in size)
            scale = tuple(float(s) for s in lsj.get("scale", (0.1, 2.0)))
            if len(size) != 2 or min(size) < 1 or len(scale) != 2 or not 0 < scale[0] <= scale[1]:
                raise ConfigError(f"data.train.augment.lsj: size must be (h, w) > 0 and scale (lo, hi) with "
                                  f"0 < lo <= hi, got {lsj!r}")
            lsj = {"size": size, "scale": scale}
        self.dataset, self.copy_paste, self.lsj, self.min_visible = dataset, float(copy_paste), lsj, int(min_visible)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str):
        # Only called for attributes this wrapper lacks: the wrapped data set's (CLASSES, coco, cat_ids, ...).
        if name == "dataset":  # not yet set (e.g. while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def _jitter(self, item: tuple[Tensor, dict], rng: np.random.Generator) -> tuple[Tensor, dict]:
        return large_scale_jitter(*item, rng, **self.lsj) if self.lsj else item

    def __getitem__(self, index: int) -> tuple[Tensor, dict]:
        rng = np.random.default_rng(np.random.randint(0, 2**31, size=4))
        image, target = self._jitter(self.dataset[index], rng)
        if self.copy_paste > 0 and len(self.dataset) > 1 and rng.random() < self.copy_paste:
            other = int(rng.integers(0, len(self.dataset) - 1))
            other += other >= index  # any item but this one
            src_image, src_target = self._jitter(self.dataset[other], rng)
            image, target = copy_paste(image, target, src_image, src_target, rng, self.min_visible)
        return image, target


def resolve_lsj_size(cfg) -> None:
    """A config's ``data.train.augment.lsj`` without ``size`` jitters to the model's largest train scale: set
    ``size=(short side, long side)`` of ``model.transform.train_scales`` (in place, so the checkpoint's config
    says what was used), after raising them to the augment's ``min_train_scale`` (:func:`resolve_scales`). Then
    a config that changes the train scale keeps its jitter right. Anything else is left as it is."""
    data = cfg.get("data") or {}
    augment = (data.get("train") or {}).get("augment") or {}
    lsj = augment.get("lsj")
    if not isinstance(lsj, dict) or "size" in lsj:
        return
    scales = [_as_scale(s, "model.transform.train_scales")
              for s in ((cfg.get("model") or {}).get("transform") or {}).get("train_scales") or []]
    if augment.get("min_train_scale"):
        scales = _raised(scales, _as_scale(augment["min_train_scale"], "data.train.augment.min_train_scale"))
    if not scales:
        raise ConfigError("data.train.augment.lsj has no size and model.transform.train_scales is not set: "
                          "give lsj=dict(size=(h, w), ...)")
    long, short = max((max(s), min(s)) for s in scales)
    lsj["size"] = (short, long)


def _as_scale(value, key: str) -> tuple[int, int]:
    scale = (int(value), int(value)) if isinstance(value, (int, float)) else tuple(int(v) for v in value)
    if len(scale) != 2 or min(scale) < 1:
        raise ConfigError(f"{key}: a scale of two sizes > 0, got {value!r}")
    return scale


def _raised(scales: list[tuple[int, int]], floor: tuple[int, int]) -> list[tuple[int, int]]:
    """Each scale whose short side is below ``floor``'s replaced by ``floor`` (duplicates merged); ``[floor]``
    for none."""
    return list(dict.fromkeys(s if min(s) >= min(floor) else floor for s in scales)) or [floor]


def resolve_scales(cfg, dataset, log=None) -> None:
    """``data.train.augment.min_train_scale`` / ``min_test_scale``: when the augmentation applies to ``dataset``
    (it is an :class:`AugmentedDataset`, so the set is within ``max_images``), the model trains and predicts at
    least at these scales: a ``model.transform`` scale with a shorter short side is replaced, a larger one is kept.
    Set in place, so the checkpoint's stored config and everything that predicts from it use them. Small objects
    of a small set gain from a larger scale at a cost that a small set can pay (docs/small_data.md). Anything else
    is left as it is."""
    augment = ((cfg.get("data") or {}).get("train") or {}).get("augment") or {}
    chosen = {key: augment.get(key) for key in MODEL_SCALE_KEYS if augment.get(key)}
    if not chosen or not isinstance(dataset, AugmentedDataset):
        return
    transform = cfg.model.setdefault("transform", {})
    for key, value in chosen.items():
        scale = _as_scale(value, f"data.train.augment.{key}")
        if key == "min_train_scale":
            scales = [_as_scale(s, "model.transform.train_scales") for s in transform.get("train_scales") or []]
            transform["train_scales"] = _raised(scales, scale)
        elif not transform.get("test_scale") or \
                min(_as_scale(transform["test_scale"], "model.transform.test_scale")) < min(scale):
            transform["test_scale"] = scale
    if log:
        test = transform.get("test_scale")
        log(f"data.train.augment: {len(dataset)} training images, the model trains at "
            f"{transform.get('train_scales')} and predicts at {tuple(test) if test else test}")

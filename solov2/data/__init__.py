"""Data sets and loaders. A config's ``type='CocoDataset'`` is looked up in one plain dict, :data:`DATASETS`."""
from __future__ import annotations

import logging

import torch
from torch import Tensor

from solov2.config import check_keys
from solov2.data.coco import CocoDataset, read_image
from solov2.data.synthetic import SyntheticShapes, write_shapes_coco
from solov2.data.transforms import hflip
from solov2.errors import ConfigError, DataError

__all__ = ["build_dataset", "collate", "CocoDataset", "SyntheticShapes", "write_shapes_coco",
           "DataError", "hflip", "read_image", "DATASETS"]

# "CityscapesDataset" is imported on first use (see _dataset_class) so that `import solov2.data` does not
# need the Cityscapes scripts.
DATASETS = {"CocoDataset": CocoDataset, "SyntheticShapes": SyntheticShapes, "CityscapesDataset": None}


def _dataset_class(name: str):
    if name not in DATASETS:
        raise ConfigError(f"dataset type {name!r} is unknown; known: {sorted(DATASETS)}")
    if DATASETS[name] is None and name == "CityscapesDataset":
        from solov2.data.cityscapes import CityscapesDataset
        DATASETS[name] = CityscapesDataset
    return DATASETS[name]


def build_dataset(cfg: dict, default_args: dict | None = None) -> torch.utils.data.Dataset:
    """Build a data set from ``{"type": name, **constructor keyword arguments}``.

    ``default_args`` fill in arguments that ``cfg`` leaves out, and only where the class takes them (so a
    caller can pass e.g. ``skip_bad_images=True`` to every kind of data set). An unknown ``type``, an unknown
    key in ``cfg`` or a missing required argument raises :class:`ConfigError`.

    ``augment=dict(copy_paste=P, lsj=dict(size=(h, w), scale=(lo, hi)), min_visible=16, max_images=N)`` (any
    of the keys; off when absent or empty) wraps the data set in :class:`~solov2.data.augment.AugmentedDataset`;
    with ``max_images``, only a data set of at most N images is wrapped (the small-data recipe: measured to help
    on small training sets, docs/small_data.md), and a larger one says in one log line that it is not. Its
    ``min_train_scale`` / ``min_test_scale`` raise the model's scales when it is wrapped (applied by the trainer:
    :func:`~solov2.data.augment.resolve_scales`); ignored here.
    """
    cfg = dict(cfg)
    augment = dict(cfg.pop("augment", None) or {})
    max_images = augment.pop("max_images", None)
    from solov2.data.augment import MODEL_SCALE_KEYS, AugmentedDataset
    for key in MODEL_SCALE_KEYS:  # the model's, applied by the trainer (augment.resolve_scales)
        augment.pop(key, None)
    if augment:
        check_keys(AugmentedDataset, augment, "data set augment", skip=("dataset",))
        if max_images is not None and (not isinstance(max_images, int) or max_images < 0):
            raise ConfigError(f"data.train.augment.max_images: a number of images >= 0 or None, got {max_images!r}")
        dataset = build_dataset(cfg, default_args)
        if max_images is not None and len(dataset) > max_images:
            logging.getLogger("solov2").info(
                "data.train.augment is off: %d training images, more than its max_images=%d", len(dataset),
                max_images)
            return dataset
        return AugmentedDataset(dataset, **augment)
    if "type" not in cfg:
        raise ConfigError(f"dataset config has no 'type'; known types: {sorted(DATASETS)}")
    name = cfg.pop("type")
    cls = _dataset_class(name)
    params = check_keys(cls, cfg, f"dataset {name}")
    for key, value in (default_args or {}).items():
        if key in params:
            cfg.setdefault(key, value)
    missing = [k for k, p in params.items() if k != "self" and p.default is p.empty and k not in cfg]
    if missing:
        raise ConfigError(f"dataset {name}: missing required key(s) {missing}")
    return cls(**cfg)


def collate(batch: list[tuple[Tensor, dict]]) -> tuple[list[Tensor], list[dict]]:
    """``[(image, target), ...]`` -> ``([image, ...], [target, ...])``; images keep their own sizes."""
    return [item[0] for item in batch], [item[1] for item in batch]

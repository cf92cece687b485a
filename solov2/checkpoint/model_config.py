"""A checkpoint carries its model: the classes that the training data decided, their COCO category ids and the
resolved config, so that ``predict``, ``eval``, ``export``, ``benchmark`` and ``Predictor`` need no config file.

Training side: :func:`resolve_classes` (the training set's categories set the head's class count, and the
val/test sets must have the same ones) and :func:`checkpoint_meta` (what ``Trainer.save`` writes).
Inference side: :func:`resolve_model` (a config and/or a checkpoint -> the config to build, the checkpoint
read once, the class names and category ids).

The checkpoint ``meta`` written here::

    {"classes": [name, ...] (label order), "cat_ids": [COCO category id of each label, ...],
     "config": the resolved config as a plain dict (after _base_, --cfg-options and the class override)}

Checkpoints written before this format hold ``"config"`` as the unresolved config *text*, which may not match
their weights; they, and official SOLO checkpoints (no config at all), need the config file to be given.
"""
from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from solov2.config import Config, ConfigDict, apply_overrides, load_config, packaged_configs

__all__ = ["load_model", "resolve_classes", "checkpoint_meta", "embedded_config", "is_config_path", "split_sources",
           "resolve_model", "ResolvedModel", "check_eval_classes"]

logger = logging.getLogger("solov2")


# ----------------------------------------------------------------------------- training
def resolve_classes(cfg: Config, train_dataset, log: Callable[[str], None] | None = None,
                    build_dataset: Callable | None = None) -> tuple[list[str], list]:
    """Make ``cfg.model.bbox_head.num_classes`` the training set's number of categories (in place).

    The config's count is a default that the data overrides, as Ultralytics overrides ``nc`` from the data
    file; the override is logged in one line naming the classes. The validation set (when evaluation will
    run) must list the same categories in the same label order: else :class:`~solov2.data.DataError` names both
    lists, before any training. A test set that differs (training does not read it) gets a one-line warning.
    Every process of a multi-process run calls this and resolves the same way.

    Returns ``(classes, cat_ids)``: the names in label order and the COCO category id of each label
    (both empty for a data set that does not name its classes; the config then decides).
    """
    from solov2.errors import DataError
    if build_dataset is None:
        from solov2.data import build_dataset
    log = log or logger.info
    classes = [str(c) for c in (getattr(train_dataset, "CLASSES", None) or [])]
    if not classes:
        return [], []
    cat_ids = list(getattr(train_dataset, "cat_ids", None) or range(1, len(classes) + 1))
    eval_cfg = cfg.get("evaluation") or {}
    val_cfg, test_cfg = cfg.data.get("val"), cfg.data.get("test")
    checks = []
    if val_cfg is not None and eval_cfg.get("interval", 0) >= 0:  # Trainer.run evaluates on data.val
        checks.append(("val", val_cfg, True))
    if test_cfg is not None and test_cfg != val_cfg:
        checks.append(("test", test_cfg, False))  # for a later `solov2 eval`; training does not read it
    for split, data_cfg, required in checks:
        try:
            dataset = build_dataset(data_cfg)
        except (OSError, ValueError):
            if required:
                raise
            continue  # not (yet) on disk: `solov2 eval` will say so if it is ever used
        other = [str(c) for c in (getattr(dataset, "CLASSES", None) or [])]
        if other and other != classes:
            problem = (f"data.{split} has {len(other)} categories {other} but data.train has {len(classes)} "
                       f"{classes}; both must list the same categories in the same id order")
            if required:
                raise DataError(problem)
            # Training never reads data.test, and a config's default test set (the demo's, say) may still be
            # on disk: say it, and let `solov2 eval --split test` refuse it if it is ever used.
            log(f"WARNING: {problem} (training does not read data.test; set it to evaluate it later)")
    head = cfg.model.bbox_head
    if head.get("num_classes") != len(classes):
        log(f"classes: data.train has {len(classes)} categories ({', '.join(classes)}); the head is built for "
            f"them (the config's model.bbox_head.num_classes={head.get('num_classes')} is overridden)")
        head.num_classes = len(classes)
    return classes, cat_ids


def checkpoint_meta(cfg: Config, classes: list[str], cat_ids: list) -> dict[str, Any]:
    """The model's part of a checkpoint's ``meta``: class names, category ids and the resolved config as a
    plain dict of builtins (so ``torch.load(weights_only=True)`` reads it back)."""
    return {"classes": list(classes), "cat_ids": list(cat_ids), "config": _plain(cfg.to_dict())}


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(_plain(v) for v in obj)
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)  # e.g. a Path: weights_only loading accepts builtins only


def embedded_config(meta: dict) -> Config | None:
    """The resolved config a checkpoint carries, or None (older checkpoints, official SOLO weights)."""
    cfg = meta.get("config")
    return Config(copy.deepcopy(cfg)) if isinstance(cfg, dict) else None


# ----------------------------------------------------------------------------- inference
def is_config_path(item: Any) -> bool:
    """A config is a ``.py`` file, a ``Config`` or the name of a packaged config that is no file here; anything else
    given where a config may go is a checkpoint."""
    if isinstance(item, Config):
        return True
    if not isinstance(item, (str, os.PathLike)):
        return False
    path = os.fspath(item)
    return path.endswith(".py") or (not os.path.exists(path) and path in packaged_configs())


def split_sources(items: list[str], command: str) -> tuple[str | None, str, list[str]]:
    """``[CONFIG] CHECKPOINT REST...`` -> ``(config or None, checkpoint, rest)``, told apart by the file type."""
    if not items:
        raise ValueError(f"solov2 {command}: expected [CONFIG.py] CHECKPOINT")
    if is_config_path(items[0]):
        if len(items) < 2 or is_config_path(items[1]):
            raise ValueError(f"solov2 {command}: a checkpoint must follow the config {items[0]}")
        return items[0], items[1], list(items[2:])
    return None, items[0], list(items[1:])


@dataclass
class ResolvedModel:
    """What to build and load: ``cfg`` (its ``model`` builds the checkpoint's network), ``checkpoint`` (the path)
    and ``ckpt`` (read once; None for random weights), ``classes`` (one name per label, ``num_classes`` of them)
    and ``cat_ids`` (COCO category id per label, or None where the checkpoint does not say)."""
    cfg: Config
    checkpoint: str | None
    ckpt: dict | None
    classes: list[str]
    cat_ids: list | None


def resolve_model(source: str | os.PathLike | Config | None, checkpoint: str | os.PathLike | None = None,
                  overrides: dict[str, Any] | None = None, log: Callable[[str], None] | None = None
                  ) -> ResolvedModel:
    """The config and checkpoint to use, from ``(CONFIG, CHECKPOINT)``, ``(CHECKPOINT,)`` or ``(CONFIG,)``.

    - Checkpoint only: its embedded config; an older checkpoint without one raises :class:`CheckpointError`
      saying that the config file is needed.
    - Both: architecture, normalization and classes come from the checkpoint's embedded config (facts of its
      weights); the test-time settings (``model.test_cfg``, ``model.transform.test_scale``) and everything
      outside ``model`` (data sets) from the config; a different class count in the config is noted in one
      line. A checkpoint without an embedded config is loaded with the config as it is.
    - Config only: random weights.

    ``overrides`` (``--cfg-options``) apply last. ``model.pretrained`` is cleared when a checkpoint is given:
    its weights replace the backbone's anyway, and the ImageNet file need not be on this machine.
    """
    from solov2.checkpoint.io import read_checkpoint
    from solov2.errors import CheckpointError
    log = log or logger.warning
    config = source
    if source is not None and not is_config_path(source):
        if checkpoint is not None:
            raise ValueError(f"{os.fspath(source)}: expected a .py config file before the checkpoint "
                             f"{os.fspath(checkpoint)}")
        config, checkpoint = None, source
    if config is None and checkpoint is None:
        raise ValueError("give a checkpoint, a .py config file, or both")
    checkpoint = os.fspath(checkpoint) if checkpoint is not None else None
    ckpt = read_checkpoint(checkpoint) if checkpoint else None
    meta = ckpt["meta"] if ckpt else {}
    embedded = embedded_config(meta)
    if config is None:
        if embedded is None:
            raise CheckpointError(f"{checkpoint}: this checkpoint holds no config (written by an older solov2 or "
                                  f"other code); give the config file before it: CONFIG.py {checkpoint}")
        cfg = embedded
    else:
        cfg = copy.deepcopy(config) if isinstance(config, Config) else load_config(config)
        if embedded is not None:
            _take_model_from_checkpoint(cfg, embedded, _name(config), checkpoint, meta, log)
    if checkpoint:
        for node in (cfg.model, cfg.model.get("backbone") or {}):
            if node.get("pretrained"):
                node["pretrained"] = None
    if overrides:
        apply_overrides(cfg, overrides)
    num_classes = int(cfg.model.bbox_head.num_classes)
    classes = _class_names(list(meta.get("classes") or []), num_classes, checkpoint, log)
    cat_ids = list(meta["cat_ids"]) if len(meta.get("cat_ids") or []) == num_classes else None
    return ResolvedModel(cfg, checkpoint, ckpt, classes, cat_ids)


def _name(config) -> str:
    return os.fspath(config) if not isinstance(config, Config) else (config.filename or "the config")


def _take_model_from_checkpoint(cfg: Config, embedded: Config, config_name: str, checkpoint: str, meta: dict,
                                log: Callable[[str], None]) -> None:
    user_model = cfg.get("model") or ConfigDict()
    model = copy.deepcopy(embedded.model)
    if "test_cfg" in user_model:
        model["test_cfg"] = copy.deepcopy(user_model["test_cfg"])
    test_scale = (user_model.get("transform") or {}).get("test_scale")
    if test_scale is not None:
        model.setdefault("transform", ConfigDict())["test_scale"] = copy.deepcopy(test_scale)
    theirs = (user_model.get("bbox_head") or {}).get("num_classes")
    ours = model.bbox_head.num_classes
    if theirs is not None and theirs != ours:
        names = meta.get("classes") or []
        log(f"note: {config_name} has num_classes={theirs}, {checkpoint} was trained on {ours} classes"
            f"{' (' + ', '.join(map(str, names)) + ')' if names else ''}; the checkpoint's are used")
    cfg.model = model


def _class_names(names: list[str], num_classes: int, checkpoint: str | None,
                 log: Callable[[str], None]) -> list[str]:
    """One name per label: the checkpoint's, else ``class_<i>``. An older checkpoint may name fewer classes
    than its head predicts (the config's count was used while the data had fewer): the rest get ``class_<i>``."""
    names = [str(n) for n in names]
    if names and len(names) != num_classes:
        log(f"note: {checkpoint} names {len(names)} classes but its model predicts {num_classes}; "
            f"labels {len(names)}..{num_classes - 1} are called class_<label>")
    return [names[i] if i < len(names) else f"class_{i}" for i in range(num_classes)]


def check_eval_classes(resolved: ResolvedModel, dataset, where: str) -> None:
    """Before evaluating: the model's classes must be the evaluation data's (``where`` names the data, e.g.
    ``data.test``); else a one-line ``ValueError`` naming both lists."""
    theirs = [str(c) for c in (getattr(dataset, "CLASSES", None) or [])]
    ours = resolved.classes
    named = bool(resolved.ckpt and (resolved.ckpt["meta"].get("classes")))
    who = resolved.checkpoint or "the model"
    if theirs and len(theirs) != len(ours):
        listed = f" {ours}" if named else ""
        raise ValueError(f"{who}: the model predicts {len(ours)} classes{listed} but {where} has {len(theirs)} "
                         f"categories {theirs}; evaluate on data with the checkpoint's categories")
    if theirs and named and theirs != ours:
        raise ValueError(f"{who}: the model's classes {ours} differ from the categories of {where} {theirs}")


def load_model(cfg: Config, checkpoint: str | dict | None, device: str = "cpu", name: str | None = None
               ) -> tuple[nn.Module, dict]:
    """The config's model with the checkpoint's weights (random if None), on ``device``, in eval mode.
    ``checkpoint`` is a path or an already read checkpoint dict (``name``: its path, for error messages).
    Returns ``(model, the checkpoint's meta)``.

    To build the model a checkpoint was trained as, from the checkpoint alone or with a config, resolve the
    config first with :func:`resolve_model` (as :class:`solov2.inference.Predictor` does); for inference
    speed, :func:`solov2.inference.optimize.optimize_for_inference` the result."""
    from solov2.checkpoint.io import load_weights
    from solov2.models import build_model
    model = build_model(cfg)
    meta = load_weights(model, checkpoint, name=name)["meta"] if checkpoint else {}
    return model.to(device).eval(), meta

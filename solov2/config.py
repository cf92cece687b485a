"""Python config files with ``_base_`` inheritance and dotted command-line overrides.

Loading is done by ``mmengine.config.Config`` (the format MMDetection users know); this module adds what the
tooling needs on top: the configs that ship inside the package, found by name (:func:`find_config`); a
one-line error for a missing or broken file; overrides (``--cfg-options a.b=1``) that refuse keys the config
does not have; and data paths made absolute when the config is loaded, so that a checkpoint's stored config
reads the same files from any folder.
"""
from __future__ import annotations

import ast
import inspect
import os
from pathlib import Path
from typing import Any, Iterable

from mmengine.config import Config, ConfigDict

from solov2.errors import ConfigError

__all__ = ["Config", "CONFIG_DIR", "find_config", "packaged_configs", "load_config", "absolute_data_paths",
           "apply_overrides", "parse_overrides", "init_params", "check_keys"]


CONFIG_DIR = Path(__file__).resolve().parent / "configs"  # the packaged configs (the repository's configs/)
# Dataset arguments that name files or folders: made absolute (against the working folder) when a config loads.
DATA_PATH_KEYS = ("ann_file", "img_prefix", "root")


def packaged_configs() -> dict[str, Path]:
    """The configs that ship with the package, ``{name: path}`` (name: the file name without ``.py``; the
    ``_base_`` files are parts of configs, not configs)."""
    return {p.stem: p for p in sorted(CONFIG_DIR.rglob("*.py")) if "_base_" not in p.relative_to(CONFIG_DIR).parts}


def find_config(name_or_path: str | os.PathLike) -> str:
    """A config file's path: ``name_or_path`` itself if it is a file, else the packaged config of that name
    (``solov2_light_448_r50_fpn_2gpu_3x``, with or without ``.py``); a one-line :class:`ConfigError` otherwise."""
    path = os.fspath(name_or_path)
    if os.path.isfile(path):
        return path
    name = os.path.basename(path)
    name = name[:-3] if name.endswith(".py") else name
    configs = packaged_configs()
    if name in configs:  # also a packaged config's repository path (configs/...) used outside the repository
        return str(configs[name])
    raise ConfigError(f"{path}: config file not found (nor a packaged config of that name; `solov2 configs` "
                      f"lists them)")


def load_config(path: str | os.PathLike, overrides: dict[str, Any] | Iterable[str] | None = None) -> Config:
    """Read a Python config file (``_base_`` files merged in), apply dotted overrides and make data paths absolute.

    Args:
        path: the ``.py`` config file, or the name of a packaged config (:func:`find_config`).
        overrides: ``{"a.b.c": value}`` or ``["a.b.c=value", ...]`` (values are Python literals).

    Relative data paths (:data:`DATA_PATH_KEYS` of ``data.train`` / ``val`` / ``test``, given in the file or
    the overrides) are taken against the current folder, as training reads them, and stored absolute.
    """
    path = find_config(path)
    try:
        cfg = Config.fromfile(path)
    except Exception as exc:  # mmengine raises many types; the user needs the file and the reason
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    if overrides:
        if not isinstance(overrides, dict):
            overrides = parse_overrides(overrides)
        apply_overrides(cfg, overrides)
    absolute_data_paths(cfg)
    return cfg


def absolute_data_paths(cfg: Config, base: str | None = None) -> Config:
    """Make the data sets' relative paths (:data:`DATA_PATH_KEYS`) absolute against ``base`` (default: the
    current folder), in place; returns ``cfg``."""
    base = base or os.getcwd()
    for split in (cfg.get("data") or {}).values():
        if not isinstance(split, dict):
            continue
        for key in DATA_PATH_KEYS:
            value = split.get(key)
            if isinstance(value, (str, os.PathLike)) and str(value) and not os.path.isabs(value):
                split[key] = os.path.normpath(os.path.join(base, value))
    return cfg


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["a.b=1", "c='x'"]`` -> ``{"a.b": 1, "c": "x"}``; a value that is no Python literal stays a string."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--cfg-options: expected key=value, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key.strip()] = value
    return out


def apply_overrides(cfg: Config, overrides: dict[str, Any]) -> None:
    """Set dotted keys in place. Every key must already exist, so a typo is an error, not a silent no-op.

    Keys that the tooling treats as optional (``OPTIONAL_TOP_LEVEL``) may be added at the top level.
    """
    for key, value in overrides.items():
        parts = key.split(".")
        node: Any = cfg
        for depth, part in enumerate(parts[:-1]):
            node = _child(node, part, ".".join(parts[: depth + 1]), key)
        leaf = parts[-1]
        exists = _has(node, leaf)
        if not exists and not (len(parts) == 1 and leaf in OPTIONAL_TOP_LEVEL) and key not in OPTIONAL_NESTED:
            parent = ".".join(parts[:-1]) or "the config"
            raise ConfigError(f"--cfg-options: unknown key {key!r} (no {leaf!r} in {parent})")
        if isinstance(node, list):
            node[int(leaf)] = value
        elif isinstance(value, dict):
            node[leaf] = ConfigDict(value)
        else:
            node[leaf] = value


# Top-level keys that configs may leave out and the command line may still set.
OPTIONAL_TOP_LEVEL = {"max_iters", "load_from", "resume_from", "work_dir", "evaluation", "seed", "grad_clip",
                      "accumulate_steps", "sync_bn", "find_unused_parameters", "auto_scale_lr", "ema",
                      "channels_last"}
# Nested keys that configs may leave out and the command line may still set (whole, as a dict literal).
OPTIONAL_NESTED = {"data.train.augment"}


def _has(node: Any, part: str) -> bool:
    if isinstance(node, list):
        return part.isdigit() and int(part) < len(node)
    return isinstance(node, (dict, Config)) and part in node


def _child(node: Any, part: str, path: str, key: str) -> Any:
    if not _has(node, part):
        raise ConfigError(f"--cfg-options: unknown key {key!r} (no {path!r} in the config)")
    return node[int(part)] if isinstance(node, list) else node[part]


def init_params(cls) -> dict[str, inspect.Parameter]:
    """The keyword arguments ``cls(...)`` takes (without ``self``); a ``**kwargs`` passed on to the base class
    counts as the base class's arguments."""
    params = dict(inspect.signature(cls.__init__).parameters)
    params.pop("self", None)
    if any(p.kind is p.VAR_KEYWORD for p in params.values()) and cls.__mro__[1] is not object:
        params = {**init_params(cls.__mro__[1]), **{k: p for k, p in params.items() if p.kind is not p.VAR_KEYWORD}}
    return params


def check_keys(cls, keys: Iterable[str], where: str, skip: tuple[str, ...] = ()) -> dict[str, inspect.Parameter]:
    """Raise :class:`ConfigError` naming ``where`` if a config key is not an argument of ``cls`` (or is one of
    ``skip``, set by the caller); returns ``cls``'s arguments. The one check behind every config section."""
    params = init_params(cls)
    unknown = sorted(k for k in keys if k not in params or k in skip)
    if unknown:
        allowed = sorted(k for k in params if k not in skip)
        raise ConfigError(f"{where}: unknown key(s) {unknown} for {cls.__name__}; allowed: {allowed}")
    return params

"""Python config files with ``_base_`` inheritance and dotted command-line overrides.

Loading is done by ``mmengine.config.Config`` (the format MMDetection users know); this module adds
the two things the tooling needs on top: a one-line error for a missing or broken file, and
overrides (``--cfg-options a.b=1``) that refuse keys the config does not have.
"""
from __future__ import annotations

import ast
import inspect
import os
from typing import Any, Iterable

from mmengine.config import Config, ConfigDict

__all__ = ["Config", "ConfigError", "load_config", "apply_overrides", "parse_overrides", "init_params", "check_keys"]


class ConfigError(ValueError):
    """A config file or override is wrong; the message names the file or key."""


def load_config(path: str | os.PathLike, overrides: dict[str, Any] | Iterable[str] | None = None) -> Config:
    """Read a Python config file (``_base_`` files merged in) and apply dotted overrides.

    Args:
        path: the ``.py`` config file.
        overrides: ``{"a.b.c": value}`` or ``["a.b.c=value", ...]`` (values are Python literals).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: config file not found")
    try:
        cfg = Config.fromfile(path)
    except Exception as exc:  # mmengine raises many types; the user needs the file and the reason
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    if overrides:
        if not isinstance(overrides, dict):
            overrides = parse_overrides(overrides)
        apply_overrides(cfg, overrides)
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
        if not exists and not (len(parts) == 1 and leaf in OPTIONAL_TOP_LEVEL):
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
                      "accumulate_steps", "sync_bn", "find_unused_parameters", "auto_scale_lr"}


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

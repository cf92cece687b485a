"""Errors raised while reading data sets."""
from __future__ import annotations

import warnings
from typing import Callable, TypeVar

from solov2.errors import DataError

__all__ = ["first_usable"]

T = TypeVar("T")


def first_usable(index: int, length: int, bad: set[int], load: Callable[[int], T], none_left: str
                 ) -> tuple[int, T]:
    """``(i, load(i))`` for the first item from ``index`` on (wrapping around) whose ``load`` does not raise
    :class:`DataError`; each failure is warned about once and remembered in ``bad``, and
    ``DataError(none_left)`` is raised when no item is usable (``skip_bad_images`` of the data sets)."""
    for offset in range(length):
        i = (index + offset) % length
        if i in bad:
            continue
        try:
            return i, load(i)
        except DataError as exc:
            bad.add(i)
            warnings.warn(f"{exc}; skipped, using the next image instead", stacklevel=3)
    raise DataError(none_left)

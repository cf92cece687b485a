"""Errors raised while reading data sets."""
from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """An image or annotation file cannot be used; the one-line message names the file."""

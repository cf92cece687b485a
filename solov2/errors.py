"""Every error class of solov2, and :func:`one_line`.

The project's errors about the user's input are printed by the command line as one line naming the file and
the problem (no traceback); errors of other libraries are shortened to one line inside them. Catch
:class:`SOLOv2Error` to catch all of ours::

    try:
        predictor = Predictor("runs/demo/latest.pth")
    except solov2.errors.SOLOv2Error as exc:
        print(exc)   # e.g. "runs/demo/latest.pth: checkpoint not found"
"""
from __future__ import annotations

import re

__all__ = ["SOLOv2Error", "ConfigError", "DataError", "CheckpointError", "ExportError", "TrainingError",
           "TrainingInterrupted", "one_line"]


class SOLOv2Error(Exception):
    """Base class of the errors below."""


class ConfigError(SOLOv2Error, ValueError):
    """A config file or override is wrong; the message names the file or key."""


class DataError(SOLOv2Error, ValueError):
    """An image or annotation file cannot be used; the one-line message names the file."""


class CheckpointError(SOLOv2Error, ValueError):
    """A checkpoint is missing, unreadable or does not fit the model; the message names the file."""


class ExportError(SOLOv2Error, ValueError):
    """An exported file cannot be written, read or run as asked; the message names the file."""


class TrainingError(SOLOv2Error, RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message says where and why."""


class TrainingInterrupted(SOLOv2Error):
    """Training stopped on Ctrl-C. ``checkpoint``: the file to resume from; ``iteration``: the iteration it
    holds (None when training stopped before writing one)."""

    def __init__(self, checkpoint: str, iteration: int | None):
        self.checkpoint, self.iteration = checkpoint, iteration
        at = f"at iteration {iteration}" if iteration is not None else "before the first checkpoint"
        super().__init__(f"training interrupted {at}; {checkpoint} holds it")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # torch.load's messages carry terminal colour codes


def one_line(exc: BaseException | str) -> str:
    """The meaningful line of an error (or of an error's text).

    * A traceback's text (an error re-raised from a spawned worker process, whose message is the worker's
      whole traceback): its last line, ``module.Type: message``.
    * Any other message: its first non-empty line (``torch.load`` and onnxruntime put the reason first and
      advice after it), whitespace runs collapsed to one space.
    * An error without a message: its type's name.
    """
    text = _ANSI.sub("", str(exc))
    lines = [" ".join(line.split()) for line in text.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return exc if isinstance(exc, str) else type(exc).__name__
    return lines[-1] if "Traceback (most recent call last)" in text else lines[0]

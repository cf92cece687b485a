"""One-line error messages: the project's errors about the user's input are printed as one line naming the
file and the problem (no traceback), and errors of other libraries are shortened to one line inside them."""
from __future__ import annotations

import re

__all__ = ["one_line"]

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

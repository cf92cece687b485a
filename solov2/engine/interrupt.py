"""Ctrl-C during training: a flag that the loop checks between iterations, never an exception mid-write.

While :func:`deferred_sigint` is active, SIGINT only sets a flag (:func:`requested`). The trainer checks
it after every iteration (all processes agree, see ``distributed.any_process``), saves ``latest.pth`` and
raises :class:`TrainingInterrupted`, which the CLI turns into one line saying how to resume and exit
status 130. A second Ctrl-C while a checkpoint is being written changes nothing: the write finishes.
Data loader workers ignore SIGINT (:func:`ignore_sigint` is their ``worker_init_fn``) so that only the
main process reacts to it.
"""
from __future__ import annotations

import signal
from contextlib import contextmanager

_requested = False


def _set_flag(signum, frame) -> None:
    global _requested
    _requested = True  # no printing here: the interrupted code may be in the middle of writing to stdout


def requested() -> bool:
    """Whether Ctrl-C was pressed since :func:`deferred_sigint` became active."""
    return _requested


@contextmanager
def deferred_sigint():
    """Make SIGINT set the :func:`requested` flag inside the block (nested blocks share the flag; the
    outermost one clears it on exit). Outside the main thread, where no handler can be set, it does nothing."""
    global _requested
    try:
        previous = signal.signal(signal.SIGINT, _set_flag)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if previous is not _set_flag:
            _requested = False


def ignore_sigint(worker_id: int = 0) -> None:
    """``worker_init_fn`` of the training loader: Ctrl-C goes to the process group; only the main process
    handles it (a worker raising KeyboardInterrupt would end silently and break the loader)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

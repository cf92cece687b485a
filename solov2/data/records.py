"""Annotation records that forked DataLoader workers share without copying them.

A data set held as Python objects (lists, dicts, floats: pycocotools' ``COCO``) is copied page by page into every
forked worker, because each access and each cyclic garbage collection pass writes the objects' reference counts:
on COCO train2017 each worker's private memory grows to over a gigabyte (PyTorch issue 13246). Here the
records live in a few numpy arrays and one pickled byte buffer (detectron2's ``DatasetFromList(serialize=True)``,
mmengine's ``serialize_data``); reading an item decodes a fresh copy and writes nothing shared.
"""
from __future__ import annotations

import pickle
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["SerializedList"]


class SerializedList(Sequence):
    """A read-only list of picklable items kept as one ``uint8`` numpy buffer and an ``int64`` end-offset array.

    ``items[i]`` unpickles item ``i`` (a new object each time: changing it changes nothing stored).
    """

    def __init__(self, items: Iterable):
        blobs = [pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL) for item in items]
        self._ends = np.cumsum(np.fromiter((len(b) for b in blobs), dtype=np.int64, count=len(blobs)))
        self._buffer = np.frombuffer(b"".join(blobs), dtype=np.uint8)  # one bytes object, one allocation

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, index: int):
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"SerializedList indices are ints, not {type(index).__name__}")
        n = len(self._ends)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {n} items")
        start = int(self._ends[index - 1]) if index else 0
        return pickle.loads(memoryview(self._buffer[start:int(self._ends[index])]))

    @property
    def nbytes(self) -> int:
        """Bytes held (buffer and offsets)."""
        return self._buffer.nbytes + self._ends.nbytes

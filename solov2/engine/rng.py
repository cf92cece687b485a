"""Training randomness that a resumed run repeats exactly.

Every random choice that feeds training is either a pure function of the run's seed and its position, or
drawn from generators whose states the checkpoint holds:

* a sample's data augmentation (e.g. the flip) runs under :func:`seeded` with
  ``derive_seed(seed, AUGMENT, epoch, index)``: :class:`SeededSamples` does this for the ``(index, seed)``
  keys that :class:`~solov2.engine.sampler.TrainSampler` yields with ``keyed=True``; so it does not depend
  on which loader worker loads the sample, nor on where in the epoch the run started;
* the model's random train scale is drawn from a ``random.Random`` that the trainer re-seeds before every
  forward pass with ``derive_seed(seed, SCALE, rank, iteration, micro_step)``;
* anything else that draws from the global Python / NumPy / torch generators continues from the states
  saved with :func:`rng_state` and restored with :func:`set_rng_state`.
"""
from __future__ import annotations

import random
from contextlib import contextmanager

import numpy as np
import torch
from torch.utils.data import Dataset

AUGMENT, SCALE, LOADER = 0, 1, 2  # first key after the seed: which stream a derived seed belongs to


def derive_seed(*keys: int) -> int:
    """A 64-bit seed that depends on every one of ``keys`` (non-negative ints) and on nothing else."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0])


@contextmanager
def seeded(seed: int):
    """Seed Python's, NumPy's and torch's (CPU) global generators with ``seed`` inside the block, and give
    them back their previous states afterwards (so the caller's random sequence is not disturbed)."""
    saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)  # NumPy's legacy seeding takes 32 bits
    # The CPU generator only, the one saved above: torch.manual_seed also queues a seeding of every GPU backend
    # with a captured stack trace, ~1 ms a call, 8 calls a demo step (3% of its time on a 2-core CPU).
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.set_rng_state(saved[2])


class SeededSamples(Dataset):
    """``dataset`` indexed by ``(index, seed)`` keys: item ``index`` loaded under :func:`seeded` ``(seed)``,
    so its random augmentation is a pure function of the key."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        with seeded(seed):
            return self.dataset[index]


def rng_state() -> dict:
    """The global generators' states as tensors and plain lists (``torch.load(weights_only=True)`` reads them).

    ``{"python": [version, [625 ints], gauss_next], "numpy": [name, [624 ints], pos, has_gauss, cached],
    "torch": (5056,) uint8, "cuda": [(16,) uint8 per device] (only where CUDA was used)}``
    """
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(internal), gauss],
             "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned (CUDA states only where as many devices are visible)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)

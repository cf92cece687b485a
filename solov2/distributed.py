"""Process groups for multi-GPU (one process per GPU, NCCL) and multi-CPU (gloo) training.

``--gpus N`` spawns N local workers; under ``torchrun`` (RANK / WORLD_SIZE / LOCAL_RANK in the
environment) each process joins the group torchrun set up, which also covers multi-node runs.
:func:`usable_cpu_cores` says how many cores a process may use (a container's quota included), which CPU
processes share as torch threads.
"""
from __future__ import annotations

import math
import os
import signal
import socket
from typing import Any, Callable

import torch
import torch.distributed as dist


def in_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def usable_cpu_cores(cgroup_root: str = "/sys/fs/cgroup") -> int:
    """How many CPU cores this process may run on: its affinity mask, capped by a container's CPU quota
    (``docker --cpus``, Kubernetes limits; cgroup v2 ``cpu.max`` or v1 ``cpu/cpu.cfs_quota_us``, rounded up).
    ``os.cpu_count()`` is the host's count in a container, and dividing that among training processes
    oversubscribes the cores a container really has."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))  # a quota of 1.5 cores runs 2 threads
    return max(1, cores)


def _cgroup_cpu_quota(root: str) -> float | None:
    """The container's CPU quota in cores, or None where there is none (or no cgroup to read)."""
    def read(*parts: str) -> str:
        with open(os.path.join(root, *parts)) as f:
            return f.read()
    try:
        quota, period = read("cpu.max").split()[:2]  # cgroup v2: "max 100000" or "150000 100000"
    except (OSError, ValueError):
        try:  # cgroup v1: -1 is no limit
            quota, period = read("cpu", "cpu.cfs_quota_us").strip(), read("cpu", "cpu.cfs_period_us").strip()
        except OSError:
            return None
    try:
        return None if quota in ("max", "-1") else int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def backend_for(device: str) -> str:
    return "nccl" if device == "cuda" else "gloo"


def init_process_group(rank: int, world_size: int, device: str) -> None:
    """Join the group (env:// rendezvous: MASTER_ADDR / MASTER_PORT are set by the launcher)."""
    if device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count())
    dist.init_process_group(backend_for(device), rank=rank, world_size=world_size)


def spawn(fn: Callable[..., Any], nprocs: int, args: tuple) -> bool:
    """Start ``nprocs`` local workers running ``fn(rank, *args)`` with a fresh rendezvous port; wait for them.

    Ctrl-C does not stop the wait: it is passed on to the workers (which stop after their current iteration
    and save, see ``interrupt``) and the wait goes on until they have ended. Returns whether Ctrl-C was
    pressed. A worker's error is raised (the others are ended), as by ``torch.multiprocessing.spawn``.
    """
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ["MASTER_PORT"] = str(free_port())
    interrupted = []

    def forward(signum, frame):
        interrupted.append(signum)
        for p in context.processes:
            try:
                os.kill(p.pid, signal.SIGINT)
            except ProcessLookupError:  # already ended
                pass

    context = torch.multiprocessing.start_processes(fn, args=args, nprocs=nprocs, join=False,
                                                    start_method="spawn")
    try:
        previous = signal.signal(signal.SIGINT, forward)
    except ValueError:  # not the main thread: Ctrl-C keeps its default behaviour
        previous = None
    try:
        while not context.join():
            pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    return bool(interrupted)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_gather_object(obj: Any) -> list[Any]:
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def reduce_mean(values: dict[str, torch.Tensor]) -> dict[str, float]:
    """Average scalar losses over processes, for logging."""
    names = sorted(values)
    stacked = torch.stack([values[k].detach().float() for k in names])
    if is_distributed():
        dist.all_reduce(stacked)
        stacked /= get_world_size()
    return {k: float(v) for k, v in zip(names, stacked)}


def any_process(flag: bool, device: str = "cpu") -> bool:
    """True on every process when ``flag`` is true on any (e.g. "Ctrl-C was pressed"), so all stop together."""
    if not is_distributed():
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Give every process rank 0's buffers (BatchNorm running statistics), in place."""
    if is_distributed():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def cleanup() -> None:
    if is_distributed():
        dist.destroy_process_group()

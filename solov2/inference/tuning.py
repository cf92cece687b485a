"""Per-machine tuning: which 3x3 convolutions run on NNPACK's Winograd, measured once per CPU and cached.

Whether Winograd F(6x6, 3x3) beats oneDNN's direct convolution depends on the CPU (vector width, FMA units,
caches), on the number of threads and on the convolution's shape, so a fixed rule taken from one machine's
timings (``solov2.inference.optimize.use_winograd``'s ``min_in_channels=256``) is right there only. Instead,
:func:`tune_winograd` measures, the first time a model is optimized on a machine, each distinct shape of its
3x3 stride-1 convolutions (input and output channels and the feature map size at the model's test scale) on
dummy inputs of that shape, both ways, and keeps Winograd where it was faster. The choices are cached per
machine in a JSON file, under a key made of the CPU model, its instruction-set flags, the torch version and the
thread count, so the next process (and every other model with the same shapes) reads them in microseconds;
another machine, another torch, or another thread count measures anew. Measuring logs one line.

Cache file: ``$SOLOV2_CACHE_DIR/tuning.json``, by default ``~/.cache/solov2/tuning.json``
(``$XDG_CACHE_HOME/solov2`` if that is set). ``solov2 tune --reset`` forgets this machine's choices;
``SOLOV2_TUNE=0`` in the environment turns measuring off (the fixed rule is used; the tests set it).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import tempfile
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from solov2.inference.winograd import nnpack_available, winograd_eligible

__all__ = ["cache_path", "machine_key", "load_cache", "reset_cache", "tune_winograd", "tuning_enabled", "shape_id",
           "conv_input_shapes", "measure_shape", "others_busy_cores"]

logger = logging.getLogger(__name__)
CACHE_VERSION = 1
MARGIN = 0.95  # Winograd must be at least 5% faster: near-ties stay on the direct convolution
# Other processes' CPU use (in cores) above which nothing is measured: oneDNN's threads wait on each other when a
# core is taken, NNPACK's less, and choices measured on a busy machine made the fp32 seed network up to 1.5x
# slower than the fixed rule (docs/history.md).
BUSY_CORES = 0.5


def cache_path() -> str:
    """``$SOLOV2_CACHE_DIR/tuning.json``, else ``$XDG_CACHE_HOME/solov2/tuning.json``, else
    ``~/.cache/solov2/tuning.json``."""
    root = os.environ.get("SOLOV2_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "solov2")
    return os.path.join(root, "tuning.json")


def tuning_enabled() -> bool:
    """False where ``SOLOV2_TUNE=0``: then nothing is measured and the fixed rule applies."""
    return os.environ.get("SOLOV2_TUNE", "1") != "0"


def _cpu_description() -> tuple[str, str]:
    """(CPU model name, its instruction-set flags sorted and joined) from ``/proc/cpuinfo``, or from
    ``platform`` where there is none."""
    model, flags = "", ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = " ".join(sorted(value.split()))
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), flags or platform.machine()


def machine_key(num_threads: int | None = None) -> dict[str, str | int]:
    """What a tuning result depends on: CPU model, ISA flags (hashed), torch version, thread count; ``"id"``
    is all of them in one string, the cache's key."""
    model, flags = _cpu_description()
    threads = num_threads or torch.get_num_threads()
    flags_hash = hashlib.sha1(flags.encode()).hexdigest()[:12]
    key = {"cpu": model, "flags_sha1": flags_hash, "torch": torch.__version__, "threads": threads}
    key["id"] = f"{model} | flags {flags_hash} | torch {torch.__version__} | {threads} threads"
    return key


def load_cache(path: str | None = None) -> dict:
    """The cache file's content (``{"version", "machines": {id: {"winograd": {shape: bool}, "timings_ms",
    ...}}, "models": {signature: {conv name: shape}}}``); empty if missing or unreadable
    (a damaged cache is measured again rather than trusted)."""
    path = path or cache_path()
    try:
        with open(path) as f:
            data = json.load(f)
        if data.get("version") == CACHE_VERSION and isinstance(data.get("machines"), dict):
            return data
    except (OSError, ValueError, AttributeError):
        pass
    return {"version": CACHE_VERSION, "machines": {}}


def _save_cache(data: dict, path: str | None = None) -> None:
    """Write atomically (a temporary file renamed over the old one), so a reader never sees half a file."""
    path = path or cache_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tuning-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def reset_cache(all_machines: bool = False, path: str | None = None) -> int:
    """Forget the cached choices of this CPU and torch (every thread count), or of every machine; returns how
    many machine entries were removed."""
    path = path or cache_path()
    data = load_cache(path)
    key = machine_key()
    prefix = key["id"].rsplit(" | ", 1)[0] + " | "
    doomed = [k for k in data["machines"] if all_machines or k.startswith(prefix)]
    for k in doomed:
        del data["machines"][k]
    if doomed or os.path.exists(path):
        _save_cache(data, path)
    return len(doomed)



def conv_input_shapes(model: nn.Module, input_size: tuple[int, int]) -> dict[nn.Conv2d, tuple[int, int, int, int]]:
    """Each 3x3 stride-1 ``Conv2d`` of a SOLOv2 (anything with ``forward_features``) -> ``(in, out, H, W)``
    where H, W is its input map when the network runs one zero image of ``input_size`` (the padded test scale).
    ``forward_features`` runs every branch (the lazy inference would skip the kernel and mask branches)."""
    shapes: dict[nn.Conv2d, tuple[int, int, int, int]] = {}

    def record(mod, args) -> None:  # a pre-hook returning something would replace the conv's input
        shapes.setdefault(mod, (mod.in_channels, mod.out_channels, *args[0].shape[-2:]))

    hooks = [m.register_forward_pre_hook(record) for m in model.modules() if winograd_eligible(m)]
    try:
        param = next(model.parameters())
        x = torch.zeros(1, 3, *input_size, dtype=param.dtype, device=param.device)
        with torch.inference_mode():
            model.forward_features(x.contiguous(memory_format=torch.channels_last))
    finally:
        for h in hooks:
            h.remove()
    return shapes


def measure_shape(in_channels: int, out_channels: int, h: int, w: int, min_reps: int = 3, max_reps: int = 30,
                  budget_s: float = 0.15) -> dict[str, float]:
    """Seconds per call (the best of the timed calls, after one warm-up each) of a 3x3 convolution of this shape:
    oneDNN's direct one on an NHWC input (as the optimized model runs it) and NNPACK's Winograd (NCHW, as
    :class:`solov2.inference.optimize.WinogradConv2d` runs it, the layout change included). The two alternate, at least
    ``min_reps`` times and until ``budget_s`` has passed (at most ``max_reps``): the minimum over many short
    calls is what a busy machine's scheduler delays do not reach."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, in_channels, h, w, generator=g).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(out_channels, in_channels, 3, 3, generator=g) * 0.05
    bias = torch.zeros(out_channels)
    weight_cl = weight.contiguous(memory_format=torch.channels_last)

    def direct():
        F.conv2d(x, weight_cl, bias, padding=1)

    def winograd():
        torch._nnpack_spatial_convolution(x.contiguous(), weight, bias, [1, 1], [1, 1])

    best = {"direct": float("inf"), "winograd": float("inf")}
    fns: dict[str, Callable[[], None]] = {"direct": direct, "winograd": winograd}
    with torch.inference_mode():
        for fn in fns.values():
            fn()
        begin = time.perf_counter()
        for rep in range(max_reps):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - start)
            if rep + 1 >= min_reps and time.perf_counter() - begin > budget_s:
                break
    return best


def others_busy_cores(window_s: float = 0.25) -> float:
    """CPU time used by other processes, in cores, over ``window_s`` while this one sleeps (``/proc/stat``; 0.0
    where it cannot be read). This process's own threads are idle meanwhile, so what is counted is the others'."""
    def read() -> tuple[int, int]:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
        return sum(ticks), ticks[3] + ticks[4]  # all, idle + iowait
    try:
        total0, idle0 = read()
        time.sleep(window_s)
        total1, idle1 = read()
    except (OSError, ValueError, IndexError):
        return 0.0
    if total1 <= total0:
        return 0.0
    return (1 - (idle1 - idle0) / (total1 - total0)) * (os.cpu_count() or 1)


def shape_id(shape: tuple[int, int, int, int]) -> str:
    return f"{shape[0]}x{shape[1]}@{shape[2]}x{shape[3]}"


def _model_signature(model: nn.Module, input_size: tuple[int, int]) -> str:
    """A hash of the module tree (types, channels, kernel sizes, strides: ``repr``) and the input size: the same
    signature means the same conv input shapes, so the shape pass is needed once per architecture."""
    return hashlib.sha1(f"{model!r}|{tuple(input_size)}".encode()).hexdigest()[:16]


def tune_winograd(model: nn.Module, input_size: tuple[int, int], path: str | None = None,
                  log: Callable[[str], None] | None = None, when_busy: str = "skip") -> dict[nn.Conv2d, bool]:
    """For each 3x3 stride-1 conv of ``model`` (a SOLOv2, on the CPU), whether Winograd was faster at its shape
    on this machine: read from the cache, and the shapes it lacks measured (:func:`measure_shape`) and added.

    ``input_size``: the padded network input the choices are made for (the model's test scale); the
    convolutions' map sizes follow from it (one pass of the network, also cached, per architecture and input
    size). Logs one line when it measured something.

    ``when_busy``: if shapes are missing while other processes keep more than :data:`BUSY_CORES` cores busy,
    ``"skip"`` measures nothing, caches nothing and returns ``{}`` (the caller's fixed rule, this time; a later
    process measures), with one line saying so; ``"measure"`` measures anyway and says the figures may be off.
    """
    if not nnpack_available():
        return {}
    path = path or cache_path()
    data = load_cache(path)
    names = {m: n for n, m in model.named_modules()}
    signature = _model_signature(model, input_size)
    known = data.setdefault("models", {}).get(signature)
    if known is not None and all(n in names.values() for n in known):
        by_name = dict(model.named_modules())
        shapes = {by_name[n]: tuple(shape) for n, shape in known.items()}
        changed = False
    else:
        shapes = conv_input_shapes(model, input_size)
        data["models"][signature] = {names[m]: list(shape) for m, shape in shapes.items()}
        changed = True
    key = machine_key()
    entry = data["machines"].setdefault(key["id"], {k: v for k, v in key.items() if k != "id"})
    choices = entry.setdefault("winograd", {})
    missing = sorted({shape_id(s): s for s in shapes.values() if shape_id(s) not in choices}.items())
    busy = others_busy_cores() if missing else 0.0
    if busy > BUSY_CORES:
        (log or logger.warning)(
            f"solov2: other processes keep {busy:.1f} of {os.cpu_count()} CPU cores busy: "
            + ("Winograd choices not measured now (the fixed rule this time; measured when the CPU is idle)"
               if when_busy == "skip" else "measuring anyway; the choices may be wrong (`solov2 tune --reset` "
               "and `solov2 tune` on an idle machine measure again)"))
        if when_busy == "skip":
            return {}
    start = time.perf_counter()
    if missing:
        timings = entry.setdefault("timings_ms", {})
        for name, shape in missing:
            t = measure_shape(*shape)
            choices[name] = t["winograd"] < MARGIN * t["direct"]
            timings[name] = [round(t["direct"] * 1e3, 3), round(t["winograd"] * 1e3, 3)]
        entry["measured"] = time.strftime("%Y-%m-%d %H:%M:%S")
    if missing or changed:
        try:
            _save_cache(data, path)
            where = f"cached in {path}"
        except OSError as exc:  # a read-only home: keep the choices for this process, say so
            where = f"not cached ({exc.strerror}: {path})"
        if missing:
            (log or logger.warning)(
                f"solov2: measured Winograd vs direct 3x3 convolution for {len(missing)} conv shape(s) on this CPU "
                f"in {time.perf_counter() - start:.1f} s; Winograd for {sum(choices[n] for n, _ in missing)}; "
                f"{where} (`solov2 tune --reset` measures again)")
    return {conv: bool(choices[shape_id(shape)]) for conv, shape in shapes.items()}


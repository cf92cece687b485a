"""``Predictor``: a trained SOLOv2 behind one call, for use in your own programs."""
from __future__ import annotations

import importlib.util
import os
import tempfile
from typing import Union

import numpy as np
import torch
from torch import nn

from .config import Config
from .data.image import read_rgb
from .engine.checkpoint import load_weights
from .models import build_model
from .optimize import optimize_for_inference
from .precision import PRECISIONS, autocast_dtype, precision_autocast, resolve_precision  # noqa: F401 (re-exported)

ImageLike = Union[str, os.PathLike, np.ndarray]
BACKENDS = ("torch", "onnxruntime")


def load_model(cfg: Config, checkpoint: str | dict | None, device: str = "cpu", optimize: bool = False,
               name: str | None = None) -> tuple[nn.Module, dict]:
    """The config's model with the checkpoint's weights (random if None), on ``device``, in eval mode;
    with ``optimize``, :func:`solov2.optimize.optimize_for_inference` of it (same results up to float
    rounding, tests/test_optimize.py). ``checkpoint`` is a path or an already read checkpoint dict (``name``:
    its path, for error messages). Returns ``(model, the checkpoint's meta)``.

    To build the model a checkpoint was trained as, from the checkpoint alone or with a config, resolve the
    config first with :func:`solov2.checkpoint_config.resolve_model` (as :class:`Predictor` does)."""
    model = build_model(cfg)
    meta = load_weights(model, checkpoint, name=name)["meta"] if checkpoint else {}
    model.to(device).eval()
    return (optimize_for_inference(model) if optimize else model), meta


class Predictor:
    """Load a checkpoint (and optionally a config) once, then predict on images.

    Example::

        >>> predictor = Predictor("runs/demo/latest.pth")  # the checkpoint carries its config and class names
        >>> result = predictor("photo.jpg")          # or an (H, W, 3) uint8 RGB array, or a list of them
        >>> result["masks"].shape, result["class_names"]
        >>> picture = predictor.draw("photo.jpg", result)

    ``Predictor(CONFIG, CHECKPOINT)`` (a ``.py`` file or a ``Config`` first) also works: the architecture and
    classes still come from the checkpoint, the test-time settings (``model.test_cfg``,
    ``model.transform.test_scale``) from the config; checkpoints without an embedded config (older ones,
    official SOLO weights) need this form (:func:`solov2.checkpoint_config.resolve_model`).
    ``Predictor(CONFIG)`` runs random weights.

    ``optimize`` (default on) runs a copy of the model with BatchNorm folded, NHWC weights and Winograd
    convolutions on CPU (:func:`solov2.optimize.optimize_for_inference`), which changes results by float
    rounding only. ``precision="bf16"`` (CPU or CUDA) or ``"fp16"`` (CUDA) runs the network under autocast,
    about twice as fast on CPUs with AVX512-BF16 / AMX, with slightly different scores and masks
    (measured in ``docs/benchmarks.md``); post-processing stays float32. The default ``"auto"`` is bf16 on
    CPUs with native bf16 (torch backend) and fp32 elsewhere (:func:`solov2.precision.resolve_precision`; the
    mask-AP cost measured for that rule is in ``docs/benchmarks.md``); ``precision="fp32"`` gives fp32
    everywhere. ``predictor.precision`` says which one runs.

    ``backend="onnxruntime"`` runs the model exported to ONNX (:mod:`solov2.export`, a dynamic graph made on
    the first call, a few seconds) in onnxruntime on the CPU, with the same post-processing in Python
    (:mod:`solov2.runtime`): fp32 only, the same instances as ``"torch"`` (tests/test_predictor.py). It needs
    the ``export`` extra (``pip install -e '.[export]'``).

    Each result holds ``masks`` ``(N, H, W)`` bool at the image's size, ``labels`` ``(N,)`` int64,
    ``scores`` ``(N,)`` float32 (NumPy arrays, best first, above ``score_thr``) and ``class_names`` (N names).
    Attributes: ``class_names`` (one per label), ``cat_ids`` (the training data's COCO category id per label,
    or None where the checkpoint does not say), ``cfg`` (the resolved config), ``model``.
    """

    def __init__(self, config: str | os.PathLike | Config | None = None, checkpoint: str | os.PathLike | None = None,
                 device: str = "cpu", score_thr: float = 0.3, batch_size: int = 4, optimize: bool = True,
                 precision: str = "auto", backend: str = "torch"):
        from .checkpoint_config import resolve_model
        precision = resolve_precision(precision, device, backend)
        _check_backend(backend, device, precision)
        resolved = resolve_model(config, checkpoint)
        self.cfg, self.checkpoint = resolved.cfg, resolved.checkpoint
        self.device, self.score_thr, self.batch_size = device, score_thr, batch_size
        self.autocast_dtype = autocast_dtype(precision, device)
        self.precision, self.backend = precision, backend
        # onnxruntime optimizes the exported graph itself; BatchNorm folding etc. would only be exported.
        optimize = optimize and backend == "torch"
        self.model, _ = load_model(self.cfg, resolved.ckpt, device, optimize, name=resolved.checkpoint)
        self.class_names, self.cat_ids = resolved.classes, resolved.cat_ids
        self._exported = None  # the onnxruntime backend's ExportedSOLOv2, made on the first call

    def __call__(self, images: ImageLike | list[ImageLike]):
        single = not isinstance(images, (list, tuple))
        arrays = [self._as_array(im) for im in ([images] if single else images)]
        results = []
        for start in range(0, len(arrays), self.batch_size):
            batch = [torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).to(self.device)
                     for a in arrays[start: start + self.batch_size]]
            results += [self._to_numpy(r) for r in self._run(batch)]
        return results[0] if single else results

    def _run(self, batch: list[torch.Tensor]) -> list[dict]:
        if self.backend == "torch":
            with torch.inference_mode(), precision_autocast(self.autocast_dtype, self.device):
                return self.model(batch)
        if self._exported is None:
            from .export import export_onnx
            from .runtime import load_exported
            with tempfile.TemporaryDirectory() as tmp:  # the session keeps the graph; the file can go
                self._exported = load_exported(export_onnx(self.model, os.path.join(tmp, "model.onnx"),
                                                           dynamic=True, class_names=self.class_names))
        return self._exported(batch)

    def _as_array(self, image: ImageLike) -> np.ndarray:
        if isinstance(image, (str, os.PathLike)):
            return read_rgb(image)
        if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8):
            desc = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise ValueError(f"Predictor: expected a path or an (H, W, 3) uint8 RGB array, got {desc}")
        return image

    def _to_numpy(self, result: dict) -> dict:
        keep = result["scores"] >= self.score_thr
        labels = result["labels"][keep].cpu().numpy()
        return {"masks": result["masks"][keep].cpu().numpy(), "labels": labels,
                "scores": result["scores"][keep].cpu().numpy(),
                "class_names": [self.class_names[i] for i in labels]}

    def draw(self, image: ImageLike, result: dict) -> np.ndarray:
        """The image with coloured masks, class names and scores drawn over it, ``(H', W', 3)`` uint8 RGB
        (the image's size, or an integer multiple of it for images under 256 pixels, to keep captions legible)."""
        from .visualize import draw_instances
        return draw_instances(self._as_array(image), result["masks"], result["labels"], result["scores"],
                              self.class_names, min_side=256)


def _check_backend(backend: str, device: str, precision: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"Predictor: backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "onnxruntime":
        missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
        if missing:
            raise ValueError(f"Predictor: backend 'onnxruntime' needs {' and '.join(missing)}: "
                             f"pip install -e '.[export]'")
        if torch.device(device).type != "cpu" or precision != "fp32":
            raise ValueError(f"Predictor: backend 'onnxruntime' runs fp32 on the CPU, got device={device!r}, "
                             f"precision={precision!r}")

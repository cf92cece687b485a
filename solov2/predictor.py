"""``Predictor``: a trained SOLOv2 behind one call, for use in your own programs."""
from __future__ import annotations

import os
from typing import Union

import numpy as np
import torch
from torch import nn

from .config import Config, load_config
from .engine.checkpoint import load_weights
from .models import build_model
from .optimize import optimize_for_inference

ImageLike = Union[str, os.PathLike, np.ndarray]


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB, upright (EXIF orientation applied), 16-bit scaled to 8;
    one-line ``ValueError`` naming the file if unreadable. The data sets' decoder (:func:`solov2.data.image.read_rgb`),
    so prediction sees the pixels that training and evaluation saw."""
    from .data.image import read_rgb
    return read_rgb(path)


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_dtype(precision: str, device: str | torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` ("fp32", "bf16" or "fp16") on ``device``; None for fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and torch.device(device).type != "cuda":
        raise ValueError("precision fp16 needs a CUDA device; on CPU use bf16")
    return PRECISIONS[precision]


def precision_autocast(dtype: torch.dtype | None, device: str | torch.device):
    """``torch.autocast`` for a dtype from :func:`autocast_dtype` on ``device``; a no-op for None (fp32)."""
    return torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None)


def load_model(cfg: Config, checkpoint: str | None, device: str = "cpu", optimize: bool = False
               ) -> tuple[nn.Module, dict]:
    """The config's model with the checkpoint's weights (random if None), on ``device``, in eval mode;
    with ``optimize``, :func:`solov2.optimize.optimize_for_inference` of it (same results up to float
    rounding, tests/test_optimize.py). Returns ``(model, the checkpoint's meta)``."""
    model = build_model(cfg)
    meta = load_weights(model, checkpoint)["meta"] if checkpoint else {}
    model.to(device).eval()
    return (optimize_for_inference(model) if optimize else model), meta


class Predictor:
    """Load a config and a checkpoint once, then predict on images.

    Example::

        >>> predictor = Predictor("configs/demo/solov2_light_r18_shapes.py", "runs/demo/latest.pth")
        >>> result = predictor("photo.jpg")          # or an (H, W, 3) uint8 RGB array, or a list of them
        >>> result["masks"].shape, result["class_names"]
        >>> picture = predictor.draw("photo.jpg", result)

    ``optimize`` (default on) runs a copy of the model with BatchNorm folded, NHWC weights and Winograd
    convolutions on CPU (:func:`solov2.optimize.optimize_for_inference`), which changes results by float
    rounding only. ``precision="bf16"`` (CPU or CUDA) or ``"fp16"`` (CUDA) runs the network under autocast,
    about twice as fast on CPUs with AVX512-BF16 / AMX, with slightly different scores and masks
    (measured in ``docs/benchmarks.md``); post-processing stays float32.

    Each result holds ``masks`` ``(N, H, W)`` bool at the image's size, ``labels`` ``(N,)`` int64,
    ``scores`` ``(N,)`` float32 (NumPy arrays, best first, above ``score_thr``) and ``class_names`` (N names).
    """

    def __init__(self, config: str | Config, checkpoint: str | None, device: str = "cpu", score_thr: float = 0.3,
                 batch_size: int = 4, optimize: bool = True, precision: str = "fp32"):
        self.cfg = load_config(config) if not isinstance(config, Config) else config
        self.device, self.score_thr, self.batch_size = device, score_thr, batch_size
        self.autocast_dtype = autocast_dtype(precision, device)
        self.model, meta = load_model(self.cfg, checkpoint, device, optimize)
        n = self.model.num_classes
        self.class_names = list(meta.get("classes") or []) or [f"class_{i}" for i in range(n)]
        if len(self.class_names) != n:
            raise ValueError(f"{checkpoint}: checkpoint names {len(self.class_names)} classes, the config {n}")

    def __call__(self, images: ImageLike | list[ImageLike]):
        single = not isinstance(images, (list, tuple))
        arrays = [self._as_array(im) for im in ([images] if single else images)]
        results = []
        for start in range(0, len(arrays), self.batch_size):
            batch = [torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).to(self.device)
                     for a in arrays[start: start + self.batch_size]]
            with torch.inference_mode(), precision_autocast(self.autocast_dtype, self.device):
                results += [self._to_numpy(r) for r in self.model(batch)]
        return results[0] if single else results

    def _as_array(self, image: ImageLike) -> np.ndarray:
        if isinstance(image, (str, os.PathLike)):
            return read_image(image)
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

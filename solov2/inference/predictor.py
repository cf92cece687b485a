"""``Predictor``: a trained SOLOv2 behind one call, for use in your own programs."""
from __future__ import annotations

import os
import tempfile
from typing import Union

import numpy as np
import torch
from torch import nn

from solov2.checkpoint.model_config import load_model
from solov2.config import Config
from solov2.data.image import read_rgb
from solov2.deploy.contract import is_exported
from solov2.inference.optimize import optimize_for_inference
from solov2.postprocess import masks_to_boxes
from solov2.precision import autocast_dtype, precision_autocast, resolve_precision

ImageLike = Union[str, os.PathLike, np.ndarray]
BACKENDS = ("torch", "onnxruntime", "openvino")




class Predictor:
    """Load a model once, then predict on images.

    ``model``: a checkpoint of ``solov2 train``, an exported file (``.onnx``, OpenVINO ``.xml``, TorchScript), or
    a config (a ``.py`` file, a packaged config's name or a ``Config``) followed by ``checkpoint``. The former
    keyword ``config=`` still works.

    Example::

        >>> predictor = Predictor("runs/demo/latest.pth")  # the checkpoint carries its config and class names
        >>> result = predictor("photo.jpg")          # or an (H, W, 3) uint8 RGB array, or a list of them
        >>> result["masks"].shape, result["class_names"]
        >>> picture = predictor.draw("photo.jpg", result)

    ``Predictor(CONFIG, CHECKPOINT)`` (a ``.py`` file, a packaged config's name or a ``Config`` first) also
    works: the architecture and classes still come from the checkpoint, the test-time settings
    (``model.test_cfg``, ``model.transform.test_scale``) from the config; checkpoints without an embedded
    config (older ones, official SOLO weights) need this form (:func:`solov2.checkpoint.model_config.resolve_model`).
    ``Predictor(CONFIG)`` runs random weights.

    ``optimize`` (default on) runs a copy of the model with BatchNorm folded, NHWC weights and Winograd
    convolutions on CPU (:func:`solov2.inference.optimize.optimize_for_inference`), which changes results by float
    rounding only. ``precision="bf16"`` (CPU or CUDA) or ``"fp16"`` (CUDA) runs the network under autocast,
    about twice as fast on CPUs with AVX512-BF16 / AMX, with slightly different scores and masks
    (measured in ``docs/history.md``); post-processing stays float32. The default ``"auto"`` is bf16 on
    CPUs with native bf16 (torch backend) and fp32 elsewhere (:func:`solov2.precision.resolve_precision`; the
    mask-AP cost measured for that rule is in ``docs/history.md``); ``precision="fp32"`` gives fp32
    everywhere. ``predictor.precision`` says which one runs. With ``optimize`` and bf16 / fp16, ``predictor.model``
    keeps its conv weights in that dtype (not cast on every call; same results), so it runs only under that
    autocast, as ``predictor(images)`` runs it.

    ``backend="onnxruntime"`` runs the model exported to ONNX (:mod:`solov2.deploy.export`, a dynamic graph made on
    the first call, a few seconds) in onnxruntime on the CPU, with the same post-processing in Python
    (:mod:`solov2.deploy.runtime`): fp32 only, the same instances as ``"torch"`` (tests/test_predictor.py). It needs
    the ``onnx`` extra (``pip install 'solov2[onnx]'``). ``backend="openvino"`` runs that graph converted to
    OpenVINO IR in OpenVINO's CPU plugin, same post-processing: ``precision`` ``"fp32"`` (set explicitly:
    OpenVINO would pick bf16 by itself on CPUs with native bf16) or ``"bf16"``; it needs the ``openvino`` extra.

    An exported ``.onnx``, ``.xml`` or TorchScript file (``solov2 export``, ``solov2 quantize``) may stand in place
    of the checkpoint: ``Predictor("model_int8.xml")``. It runs in its own runtime (``backend`` may name it or stay
    ``"torch"``), with the class names and thresholds stored in it; with a config first
    (``Predictor(CONFIG, "model.xml")``) the file must be a model of that config (classes, grids, strides).

    Each result holds ``masks`` ``(N, H, W)`` bool at the image's size, ``labels`` ``(N,)`` int64,
    ``scores`` ``(N,)`` float32, ``boxes`` ``(N, 4)`` float32 x1, y1, x2, y2 in the image's pixels, the box of each
    mask (pixel edges: ``x2 - x1`` is the mask's width; zeros for an empty mask) (NumPy arrays, best first, above
    ``score_thr``) and ``class_names`` (N names). :meth:`predict_tiled` predicts big images tile by tile.
    Attributes: ``class_names`` (one per label), ``cat_ids`` (the training data's COCO category id per label,
    or None where the checkpoint does not say), ``cfg`` (the resolved config), ``model``.
    """

    def __init__(self, model: str | os.PathLike | Config | None = None, checkpoint: str | os.PathLike | None = None,
                 device: str = "cpu", score_thr: float = 0.3, batch_size: int = 4, optimize: bool = True,
                 precision: str = "auto", backend: str = "torch", config: str | os.PathLike | Config | None = None):
        from solov2.checkpoint.model_config import resolve_model
        source = config if model is None else model  # `config=` is the former name of the first parameter
        exported = _exported_path(source, checkpoint)
        if exported is not None:
            runtime = backend_of_file(exported, backend)
            backend = runtime  # "torchscript" too: the file runs in torch, not our model
            precision = resolve_precision(precision, device, runtime)
        else:
            precision = resolve_precision(precision, device, backend)
            check_backend(backend, device, precision)
        self.device, self.score_thr, self.batch_size = device, score_thr, batch_size
        self.backend, self.precision = backend, precision
        self._exported = None  # the onnxruntime / openvino backend's ExportedSOLOv2, made on the first call
        if exported is not None:
            self._open_exported(exported, source if exported != source else None)
            return
        # Exported runtimes run the network at the precision they are given, not under torch's autocast.
        self.autocast_dtype = autocast_dtype(precision if backend == "torch" else "fp32", device)
        resolved = resolve_model(source, checkpoint)
        self.cfg, self.checkpoint = resolved.cfg, resolved.checkpoint
        # onnxruntime / OpenVINO optimize the exported graph themselves; BatchNorm folding etc. would only be exported.
        optimize = optimize and backend == "torch"
        self.model, _ = load_model(self.cfg, resolved.ckpt, device, name=resolved.checkpoint)
        if optimize:
            self.model = optimize_for_inference(self.model, autocast_dtype=self.autocast_dtype)
        self.class_names, self.cat_ids = resolved.classes, resolved.cat_ids

    def _open_exported(self, path: str, config) -> None:
        from solov2.checkpoint.model_config import resolve_model
        from solov2.deploy.runtime import check_same_model, load_exported
        self._exported = load_exported(path, self.precision)
        self.model, self.checkpoint, self.cat_ids, self.autocast_dtype = None, path, None, None
        self.cfg = resolve_model(config).cfg if config is not None else None
        if self.cfg is not None:
            source = config.filename if isinstance(config, Config) else os.fspath(config)
            check_same_model(self._exported, self.cfg.model, source or "the config")
        self.class_names = self._exported.label_names

    def __call__(self, images: ImageLike | list[ImageLike]):
        single = not isinstance(images, (list, tuple))
        arrays = [self._as_array(im) for im in ([images] if single else images)]
        results = []
        for start in range(0, len(arrays), self.batch_size):
            batch = [torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).to(self.device)
                     for a in arrays[start: start + self.batch_size]]
            results += [self._to_numpy(r) for r in self._run(batch)]
        return results[0] if single else results

    def predict_tiled(self, image: ImageLike, tile: int, overlap: int | None = None, min_overlap: float = 0.5) -> dict:
        """One big image predicted in overlapping ``tile`` x ``tile`` tiles, merged into one result
        (:mod:`solov2.inference.tiling`): a result as ``predictor(image)`` gives, for the whole image.

        Each tile is resized to the test scale like any image, so a ``tile`` about the test scale's size
        (``cfg.model.transform.test_scale``) predicts at full resolution, where objects of a few dozen pixels
        keep their size. ``overlap``: pixels shared by neighbouring tiles (default ``tile // 4``), best at
        least the largest object's size, so that every object is whole in some tile; detections of one
        object in two tiles are merged (same class, masks overlapping by ``min_overlap`` where both tiles
        see them) into one instance, its mask their union."""
        from solov2.inference.tiling import instances_to_result, merge_tile_results, tile_boxes
        array = self._as_array(image)
        overlap = tile // 4 if overlap is None else overlap
        tiles = tile_boxes(array.shape[:2], tile, overlap)
        results = self([np.ascontiguousarray(array[y1:y2, x1:x2]) for x1, y1, x2, y2 in tiles])
        return instances_to_result(merge_tile_results(results, tiles, min_overlap), array.shape[:2],
                                   self.class_names)

    def _run(self, batch: list[torch.Tensor]) -> list[dict]:
        if self.backend == "torch":
            with torch.inference_mode(), precision_autocast(self.autocast_dtype, self.device):
                return self.model(batch)
        if self._exported is None:
            self._exported = exported_runtime(self.model, self.backend, self.precision, self.class_names)
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
        masks = result["masks"][keep]
        boxes = result["boxes"][keep] if "boxes" in result else masks_to_boxes(masks)
        return {"masks": masks.cpu().numpy(), "labels": labels, "scores": result["scores"][keep].cpu().numpy(),
                "boxes": boxes.cpu().numpy(), "class_names": [self.class_names[i] for i in labels]}

    def draw(self, image: ImageLike, result: dict, min_side: int = 0, boxes: bool = False) -> np.ndarray:
        """The image with coloured masks, class names and scores drawn over it: ``(H, W, 3)`` uint8 RGB, the
        image's own size. ``min_side``: an image whose shorter side is below it is first enlarged by an integer
        factor (nearest neighbour), so that captions stay legible on small images (``solov2 predict`` uses 256);
        the picture is then ``(k * H, k * W, 3)``. ``boxes``: each instance's box too (``result["boxes"]``)."""
        from solov2.inference.visualize import draw_instances
        return draw_instances(self._as_array(image), result["masks"], result["labels"], result["scores"],
                              self.class_names, min_side=min_side, boxes=result["boxes"] if boxes else None)


def exported_runtime(model: nn.Module, backend: str, precision: str = "fp32", class_names=None):
    """``model`` exported to a dynamic graph of ``backend`` ("onnxruntime": ONNX, "openvino": IR) and opened in it
    (:class:`solov2.deploy.runtime.ExportedSOLOv2`, a few seconds); the file is written to a temporary folder."""
    from solov2.deploy.export import export_onnx, export_openvino
    from solov2.deploy.runtime import load_exported
    export = export_openvino if backend == "openvino" else export_onnx
    name = "model.xml" if backend == "openvino" else "model.onnx"
    with tempfile.TemporaryDirectory() as tmp:  # the session keeps the graph; the file can go
        return load_exported(export(model, os.path.join(tmp, name), dynamic=True, class_names=class_names),
                             precision)


def _exported_path(config, checkpoint) -> str | None:
    """The exported file given in place of the checkpoint (or alone, in the config's place), else None."""
    for item in (checkpoint, config):
        if isinstance(item, (str, os.PathLike)) and is_exported(item):
            return os.fspath(item)
    return None


def backend_of_file(path: str, backend: str) -> str:
    """The runtime that runs an exported file (:func:`solov2.deploy.contract.runtime_of`: onnxruntime, openvino or
    torchscript), checked against ``backend`` (left at "torch", or naming that runtime)."""
    from solov2.deploy.contract import runtime_of
    runtime = runtime_of(path)
    if backend not in BACKENDS:
        check_backend(backend, "cpu", "fp32")
    if backend not in ("torch", runtime):
        raise ValueError(f"{path}: an exported file of {runtime} runs with backend '{runtime}', not {backend!r}")
    return runtime


def check_backend(backend: str, device: str, precision: str, exporting: bool = True) -> None:
    """A one-line ``ValueError`` for an unknown backend, a backend whose extra is not installed (naming the pip
    extra; ``exporting``: the checkpoint is to be exported, which needs onnx too) or a device / precision it
    does not run."""
    from solov2.deploy.contract import missing_extra
    if backend not in BACKENDS:
        raise ValueError(f"Predictor: backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "torch":
        return
    reason = missing_extra(backend, exporting=exporting)
    if reason:
        raise ValueError(f"Predictor: backend '{backend}' {reason}")
    allowed = ("fp32", "bf16") if backend == "openvino" else ("fp32",)
    if torch.device(device).type != "cpu" or precision not in allowed:
        raise ValueError(f"Predictor: backend '{backend}' runs {' or '.join(allowed)} on the CPU, got "
                         f"device={device!r}, precision={precision!r}")


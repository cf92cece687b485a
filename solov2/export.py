"""Export SOLOv2 to ONNX or TorchScript, and run the exported file with the same results as the model.

By default the exported graph is the network::

    input        (1, 3, H, W) float32   the image resized (keep ratio), normalized with the model's
                                        mean/std (RGB, 0..255 scale) and zero-padded at the bottom/right
                                        to H x W; H and W are multiples of 32.
    cate_scores  (M, C)  float32        per-cell class probabilities after sigmoid and points-NMS,
                                        M = sum of S^2 over levels, cells in level-major, row-major order.
    kernels      (M, E*k*k) float32     the dynamic kernel of every cell.
    mask_feat    (E, H/4, W/4) float32  the unified mask feature map.

:func:`preprocess_for_export` builds that input from a uint8 image. Score thresholding, the dynamic
convolution of the selected kernels, Matrix NMS and the resizing back to the image then run in Python
(:func:`postprocess_exported`, which calls :func:`solov2.postprocess.postprocess_single`).

With ``with_postprocess=True`` (``solov2 export --with-postprocess``) the graph also holds the
post-processing up to the final resizing, Matrix NMS included, as fixed-size tensors
(:func:`solov2.postprocess.postprocess_fixed`), so a deployment needs no Python of ours::

    scores       (D,) float32           descending; 0 marks a padding row, D = max_per_img (100)
    labels       (D,) int64             class index
    mask_probs   (D, H/4, W/4) float32  mask probabilities on the padded input's 1/4 grid

What is left is to drop the rows with score 0 and, per mask, upsample x4 (bilinear), crop to the resized
image, resize to the original image and threshold at ``mask_thr`` (0.5):
:func:`solov2.postprocess.masks_at_original_size`.

Everything needed to run the file without the config (transform, ``test_cfg``, grids, strides) is
stored in it: ONNX ``metadata_props`` / a TorchScript extra file, key ``solov2``, as JSON.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import warnings
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from .models.transform import ImageTransform, check_images, rescale_size
from .export_dcn import prepare_onnx_export
from .postprocess import TestConfig, cell_scores, masks_at_original_size, postprocess_fixed, postprocess_single

__all__ = ["ExportError", "SOLOv2ExportWrapper", "ExportedSOLOv2", "export_onnx", "export_torchscript",
           "preprocess_for_export", "postprocess_exported", "instances_from_graph", "load_exported"]

OUTPUT_NAMES = ["cate_scores", "kernels", "mask_feat"]
POSTPROCESSED_NAMES = ["scores", "labels", "mask_probs"]
META_KEY = "solov2"
FORMAT_VERSION = 1


class ExportError(ValueError):
    """An exported file cannot be written, read or run as asked; the message names the file."""


class SOLOv2ExportWrapper(nn.Module):
    """``(1, 3, H, W)`` normalized, padded image -> ``(cate_scores (M, C), kernels (M, D), mask_feat (E, H/4, W/4))``,
    or with ``with_postprocess`` -> ``(scores (D,), labels (D,), mask_probs (D, H/4, W/4))``.

    The same computation as the first half of ``SOLOv2.inference`` / ``SOLOv2.postprocess``, for one image.
    """

    def __init__(self, model: nn.Module, with_postprocess: bool = False):
        super().__init__()
        self.model = model
        self.with_postprocess = with_postprocess

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        cate_preds, kernel_preds, mask_feats = self.model.forward_features(x)
        head = self.model.bbox_head
        scores = torch.cat([cell_scores(p) for p in cate_preds], dim=1)  # (1, M, C)
        kernels = head.flatten_kernels(kernel_preds)  # (1, M, D)
        if not self.with_postprocess:
            return scores[0], kernels[0], mask_feats[0]
        return postprocess_fixed(scores[0], kernels[0].float(), mask_feats[0].float(), head.cell_strides(x.device),
                                 self.model.test_cfg, head.kernel_size)


def _check_input_size(model: nn.Module, input_size: Sequence[int]) -> tuple[int, int]:
    d = model.transform.size_divisor
    if len(input_size) != 2 or any(int(s) <= 0 or int(s) % d for s in input_size):
        raise ValueError(f"input_size must be (H, W) with positive multiples of {d}, got {tuple(input_size)}")
    return int(input_size[0]), int(input_size[1])


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _export_meta(model: nn.Module, input_size: tuple[int, int] | None, fmt: str,
                 with_postprocess: bool) -> dict[str, Any]:
    """What :class:`ExportedSOLOv2` needs to pre- and post-process without the config."""
    head = model.bbox_head
    return {
        "format_version": FORMAT_VERSION,
        "format": fmt,
        "postprocess": "graph" if with_postprocess else "python",
        "input_size": list(input_size) if input_size else None,
        "transform": dataclasses.asdict(model.transform),
        "test_cfg": dataclasses.asdict(model.test_cfg),
        "num_classes": head.num_classes,
        "num_grids": list(head.num_grids),
        "strides": list(head.strides),
        "kernel_size": head.kernel_size,
    }


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    """Export in eval mode, and give the model back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@contextlib.contextmanager
def _quiet_deprecations():
    # torch 2.9+ marks TorchScript and the TorchScript-based ONNX exporter as deprecated; the user did
    # not call them directly, so their warnings are noise here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


def export_onnx(model: nn.Module, out_path: str, input_size: Sequence[int] = (448, 768), dynamic: bool = False,
                opset: int = 17, with_postprocess: bool = False) -> str:
    """Write ``model`` (a :class:`~solov2.models.SOLOv2`) as an ONNX graph with the I/O of this module's docstring.

    Args:
        input_size: (H, W) of the example input, multiples of 32. With ``dynamic=False`` the graph accepts
            only this size; with ``dynamic=True`` any multiple of 32 (``mask_feat`` follows).
        opset: ONNX opset (17 works with onnxruntime >= 1.14).
        with_postprocess: put the post-processing, Matrix NMS included, into the graph (module docstring).
    Returns: ``out_path``.

    Uses the TorchScript-based exporter (``dynamo=False``): it needs no ``onnxscript`` and handles the
    shape-dependent ``linspace`` of the CoordConv channels.
    """
    import onnx

    h, w = _check_input_size(model, input_size)
    wrapper = SOLOv2ExportWrapper(model, with_postprocess)
    example = torch.zeros(1, 3, h, w, device=_device_of(model))
    names = POSTPROCESSED_NAMES if with_postprocess else OUTPUT_NAMES
    dynamic_axes = ({"input": {2: "height", 3: "width"}, names[2]: {1: "feat_height", 2: "feat_width"}}
                    if dynamic else None)
    opset = prepare_onnx_export(model, opset, out_path)  # DCN: opset 19 DeformConv, or a one-line error
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with _quiet_deprecations(), _eval_mode(model), torch.no_grad():
        torch.onnx.export(wrapper, (example,), out_path, dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=names, dynamic_axes=dynamic_axes,
                          do_constant_folding=True)
    proto = onnx.load(out_path)
    meta = _export_meta(model, None if dynamic else (h, w), "onnx", with_postprocess)
    onnx.helper.set_model_props(proto, {META_KEY: json.dumps(meta)})
    onnx.save(proto, out_path)
    return out_path


def export_torchscript(model: nn.Module, out_path: str, input_size: Sequence[int] = (448, 768),
                       with_postprocess: bool = False) -> str:
    """Write ``model`` as a traced TorchScript module with the I/O of this module's docstring.

    The trace is made at ``input_size`` (H, W), multiples of 32; :func:`load_exported` accepts only that
    size, as tracing may freeze shapes. Export a model that is on the CPU: a trace can keep the device it
    was made on, and :func:`load_exported` runs on the CPU. Returns ``out_path``.
    """
    h, w = _check_input_size(model, input_size)
    wrapper = SOLOv2ExportWrapper(model, with_postprocess)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with _quiet_deprecations():
        with _eval_mode(model), torch.no_grad():
            traced = torch.jit.trace(wrapper, (torch.zeros(1, 3, h, w, device=_device_of(model)),),
                                     check_trace=False)
        meta = _export_meta(model, (h, w), "torchscript", with_postprocess)
        torch.jit.save(traced, out_path, _extra_files={META_KEY: json.dumps(meta)})
    return out_path


def preprocess_for_export(model: Any, image: Tensor, input_size: Sequence[int] | None
                          ) -> tuple[Tensor, dict[str, tuple[int, int]]]:
    """One image -> the exported graph's input, with the model's own resizing and normalization.

    Args:
        model: a SOLOv2, an :class:`ExportedSOLOv2`, or anything with a ``transform`` (:class:`ImageTransform`).
        image: ``(3, H0, W0)`` RGB, uint8 or float on the 0..255 scale.
        input_size: the graph's (H, W); ``None`` (dynamic graph) pads to the next multiple of the size divisor.
    Returns: ``(tensor (1, 3, H, W) float32, meta)`` with ``meta = {"image_size": (h, w) resized image inside the
        input, "original_size": (H0, W0), "input_size": (H, W)}``.

    The image is resized exactly as ``model(images)`` does (``transform.test_scale``); if that does not fit
    in ``input_size`` it is shrunk further (keeping the ratio) until it does, so results then differ from the
    model's, which would have seen a larger input.
    """
    transform: ImageTransform = model.transform
    check_images([image])
    h0, w0 = int(image.shape[-2]), int(image.shape[-1])
    h, w = rescale_size(h0, w0, transform.test_scale)
    if input_size is not None and (h > input_size[0] or w > input_size[1]):
        factor = min(input_size[0] / h0, input_size[1] / w0)
        h, w = min(int(h0 * factor + 0.5), input_size[0]), min(int(w0 * factor + 0.5), input_size[1])
    if input_size is None:
        d = transform.size_divisor
        input_size = ((h + d - 1) // d * d, (w + d - 1) // d * d)
    # The transform's own resize + normalize, so that the pixels match model(images) exactly.
    resized = transform._resize_normalize(image.cpu(), (h, w))
    batch = resized.new_zeros((1, 3, int(input_size[0]), int(input_size[1])))
    batch[0, :, :h, :w] = resized
    return batch, {"image_size": (h, w), "original_size": (h0, w0), "input_size": tuple(batch.shape[-2:])}


def postprocess_exported(outputs: Sequence[Any], meta: dict, model_test_cfg: TestConfig | dict,
                         cell_strides: Tensor | Sequence[float], kernel_size: int = 1) -> dict[str, Tensor]:
    """The exported graph's outputs -> ``{"masks": (N, H0, W0) bool, "labels": (N,) int64, "scores": (N,) float32}``.

    Args:
        outputs: ``(cate_scores, kernels, mask_feat)`` as numpy arrays or tensors.
        meta: from :func:`preprocess_for_export`.
        model_test_cfg: the model's :class:`TestConfig` (or its fields as a dict).
        cell_strides: ``(M,)`` the stride of each cell's level (``model.bbox_head.cell_strides(...)``).
        kernel_size: the dynamic kernel size k.
    """
    cate_scores, kernels, mask_feat = (torch.as_tensor(o).float() for o in outputs)
    cfg = model_test_cfg if isinstance(model_test_cfg, TestConfig) else TestConfig(**model_test_cfg)
    strides = torch.as_tensor(cell_strides, dtype=torch.float32)
    return postprocess_single(cate_scores, kernels, mask_feat, strides, tuple(meta["image_size"]),
                              tuple(meta["original_size"]), cfg, kernel_size)


def instances_from_graph(outputs: Sequence[Any], meta: dict, mask_thr: float) -> dict[str, Tensor]:
    """A ``with_postprocess`` graph's ``(scores, labels, mask_probs)`` -> the model's result for the image
    (padding rows dropped, masks at the original size); ``meta`` from :func:`preprocess_for_export`."""
    scores, labels, mask_probs = (torch.as_tensor(o) for o in outputs)
    keep = scores > 0
    masks = masks_at_original_size(mask_probs[keep].float(), tuple(meta["image_size"]),
                                   tuple(meta["original_size"]), mask_thr)
    return {"masks": masks, "labels": labels[keep].long(), "scores": scores[keep].float()}


class ExportedSOLOv2:
    """An exported ``.onnx`` (run with onnxruntime, CPU) or TorchScript ``.pt`` file, used like the model.

    ``exported(images)`` takes a list of ``(3, H, W)`` uint8 RGB images and returns, like ``model.eval()(images)``,
    one ``{"masks": (N, H, W) bool, "labels": (N,) int64, "scores": (N,) float32}`` per image.
    ``exported.run(tensor)`` runs the graph alone on a prepared ``(1, 3, H, W)`` input.
    """

    def __init__(self, path: str):
        self.path = path
        if not os.path.isfile(path):
            raise ExportError(f"{path}: exported model not found")
        if path.endswith(".onnx"):
            self._session, meta = _open_onnx(path)
            self._module = None
        else:
            self._module, meta = _open_torchscript(path)
            self._session = None
        self.meta = meta
        self.with_postprocess = meta.get("postprocess") == "graph"
        self.input_size = tuple(meta["input_size"]) if meta["input_size"] else None
        self.transform = _transform_from_meta(meta["transform"])
        self.test_cfg = TestConfig(**meta["test_cfg"])
        self.kernel_size = int(meta["kernel_size"])
        self.cell_strides = torch.cat([torch.full((s * s,), float(st)) for s, st in
                                       zip(meta["num_grids"], meta["strides"])])

    def run(self, tensor: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(1, 3, H, W)`` float32 -> the graph's outputs, ``(cate_scores, kernels, mask_feat)`` or with
        post-processing ``(scores, labels, mask_probs)``; a wrong size raises :class:`ExportError`."""
        shape = tuple(tensor.shape)
        d = self.transform.size_divisor
        if len(shape) != 4 or shape[:2] != (1, 3):
            raise ExportError(f"{self.path}: expects input (1, 3, H, W), got {shape}")
        if self.input_size is not None and shape[2:] != self.input_size:
            raise ExportError(f"{self.path}: expects input size {self.input_size[0]}x{self.input_size[1]} "
                              f"(H x W), got {shape[2]}x{shape[3]}")
        if shape[2] % d or shape[3] % d:
            raise ExportError(f"{self.path}: input size must be multiples of {d}, got {shape[2]}x{shape[3]}")
        x = tensor.detach().float().cpu().contiguous()
        if self._session is not None:
            outs = self._session.run(POSTPROCESSED_NAMES if self.with_postprocess else OUTPUT_NAMES,
                                     {"input": x.numpy()})
            return tuple(torch.from_numpy(o) for o in outs)
        with torch.no_grad():
            return tuple(self._module(x))

    def __call__(self, images: Sequence[Tensor]) -> list[dict[str, Tensor]]:
        check_images(images)
        results = []
        for image in images:
            tensor, meta = preprocess_for_export(self, image, self.input_size)
            if self.with_postprocess:
                results.append(instances_from_graph(self.run(tensor), meta, self.test_cfg.mask_thr))
            else:
                results.append(postprocess_exported(self.run(tensor), meta, self.test_cfg, self.cell_strides,
                                                    self.kernel_size))
        return results


def _transform_from_meta(fields: dict[str, Any]) -> ImageTransform:
    """JSON turned the transform's tuples into lists; give them back their types."""
    fields = dict(fields)
    fields["train_scales"] = [tuple(s) for s in fields.get("train_scales", [])] or [(1333, 800)]
    for key in ("test_scale", "mean", "std"):
        if key in fields:
            fields[key] = tuple(fields[key])
    return ImageTransform(**fields)


def _parse_meta(path: str, text: str | bytes | None) -> dict[str, Any]:
    if not text:
        raise ExportError(f"{path}: no SOLOv2 metadata in the file (not written by solov2.export?)")
    meta = json.loads(text)
    if meta.get("format_version") != FORMAT_VERSION:
        raise ExportError(f"{path}: export format version {meta.get('format_version')}, "
                          f"this code reads {FORMAT_VERSION}")
    return meta


def _open_onnx(path: str):
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ExportError(f"{path}: onnxruntime cannot open it ({str(exc).strip().splitlines()[0]})") from None
    return session, _parse_meta(path, session.get_modelmeta().custom_metadata_map.get(META_KEY))


def _open_torchscript(path: str):
    extra = {META_KEY: ""}
    try:
        with _quiet_deprecations():
            module = torch.jit.load(path, map_location="cpu", _extra_files=extra)
    except Exception as exc:
        raise ExportError(f"{path}: not a TorchScript file ({str(exc).strip().splitlines()[0]})") from None
    return module.eval(), _parse_meta(path, extra[META_KEY])


def load_exported(path: str) -> ExportedSOLOv2:
    """Open an ``.onnx`` (onnxruntime) or TorchScript (any other suffix, e.g. ``.pt``) file from this module."""
    return ExportedSOLOv2(path)

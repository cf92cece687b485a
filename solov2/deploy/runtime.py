"""Run a file written by :mod:`solov2.deploy.export` (ONNX with onnxruntime, OpenVINO IR with OpenVINO, or TorchScript)
like the model itself.

Each file type has its own runtime session (:data:`RUNTIMES`: ``.onnx`` onnxruntime, ``.xml`` OpenVINO
(:mod:`solov2.deploy.openvino`), any other suffix TorchScript); a session only runs the graph, and everything around
it (pre-processing, the post-processing of :func:`postprocess_exported` / :func:`instances_from_graph`) is this
module's, the same for all of them. The graph's inputs, outputs and metadata are described once, in
docs/deployment.md.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from typing import Any, Sequence

import torch
from torch import Tensor

from solov2.deploy.contract import META_KEY, OUTPUT_NAMES, POSTPROCESSED_NAMES, missing_extra, parse_meta, runtime_of
from solov2.errors import ExportError, one_line
from solov2.models.solov2_head import cell_strides
from solov2.models.transform import (
    ImageTransform,
    check_images,
    masks_at_original_size,
    pad_images,
    padded_size,
    transform_fields,
)
from solov2.postprocess import TestConfig, masks_to_boxes, postprocess_single

__all__ = ["ExportedSOLOv2", "load_exported", "preprocess_for_export", "postprocess_exported",
           "instances_from_graph", "check_same_model"]



@contextlib.contextmanager
def quiet_deprecations():
    """torch 2.9+ marks TorchScript and the TorchScript-based ONNX exporter as deprecated; the user did not
    call them directly, so their warnings are noise here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


def preprocess_for_export(model: Any, image: Tensor, input_size: Sequence[int] | None
                          ) -> tuple[Tensor, dict[str, tuple[int, int]]]:
    """One image -> the exported graph's input, with the model's own resizing and normalization.

    Args:
        model: a SOLOv2, an :class:`ExportedSOLOv2`, or anything with a ``transform`` (:class:`ImageTransform`).
        image: ``(3, H0, W0)`` RGB, uint8 or float on the 0..255 scale.
        input_size: the graph's (H, W); ``None`` (dynamic graph) pads to the next multiple of the size divisor.
    Returns: ``(tensor (1, 3, H, W) float32, meta)`` with ``meta = {"image_size": (h, w) resized image inside the
        input, "original_size": (H0, W0), "input_size": (H, W)}``; the graph's ``image_size`` input is
        ``torch.tensor(meta["image_size"])``.

    The image is resized exactly as ``model(images)`` does (``transform.test_size``). If that does not fit in
    ``input_size`` (a static graph exported smaller than the default square of the test scale's long side)
    it is shrunk further, keeping the ratio, until it does: results then differ from the model's.
    """
    transform: ImageTransform = model.transform
    check_images([image])
    h0, w0 = int(image.shape[-2]), int(image.shape[-1])
    h, w = transform.test_size(h0, w0)
    if input_size is not None and (h > input_size[0] or w > input_size[1]):
        factor = min(input_size[0] / h0, input_size[1] / w0)
        h, w = min(int(h0 * factor + 0.5), input_size[0]), min(int(w0 * factor + 0.5), input_size[1])
    if input_size is None:
        input_size = padded_size((h, w), transform.size_divisor)
    batch = pad_images([transform.resize_normalize(image.cpu(), (h, w))], input_size)
    return batch, {"image_size": (h, w), "original_size": (h0, w0), "input_size": tuple(batch.shape[-2:])}


def postprocess_exported(outputs: Sequence[Any], meta: dict, model_test_cfg: TestConfig | dict,
                         cell_strides: Tensor | Sequence[float], kernel_size: int = 1) -> dict[str, Tensor]:
    """The exported graph's outputs -> ``{"masks": (N, H0, W0) bool, "labels": (N,) int64, "scores": (N,) float32,
    "boxes": (N, 4) float32}`` (boxes xyxy from the masks, :func:`solov2.postprocess.masks_to_boxes`).

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
    return {"masks": masks, "labels": labels[keep].long(), "scores": scores[keep].float(),
            "boxes": masks_to_boxes(masks)}


class ExportedSOLOv2:
    """An exported ``.onnx`` (run with onnxruntime, CPU), OpenVINO ``.xml`` (OpenVINO's CPU plugin, ``precision``
    ``"fp32"`` or ``"bf16"``; an int8 IR of ``solov2 quantize`` runs its int8 layers either way) or TorchScript
    ``.pt`` file, used like the model.

    ``exported(images)`` takes a list of ``(3, H, W)`` uint8 RGB images and returns, like ``model.eval()(images)``,
    one ``{"masks": (N, H, W) bool, "labels": (N,) int64, "scores": (N,) float32, "boxes": (N, 4) float32}`` per
    image.
    ``exported.run(tensor, image_size)`` runs the graph alone on a prepared ``(1, 3, H, W)`` input.
    Attributes from the file's metadata: ``transform``, ``test_cfg``, ``class_names`` (None if not stored),
    ``label_names`` (one name per label, ``class_<i>`` where none is stored), ``input_size`` (None for a dynamic
    graph), ``meta`` (all of it).
    """

    def __init__(self, path: str, precision: str = "fp32"):
        self.path = path
        if not os.path.isfile(path):
            raise ExportError(f"{path}: exported model not found")
        runtime = runtime_of(path)
        if precision != "fp32" and runtime != "openvino":
            raise ExportError(f"{path}: {runtime} runs this file in fp32 only, got precision={precision!r}")
        self.runtime, self.precision = runtime, precision
        if runtime == "onnxruntime":
            self._session, meta = _open_onnx(path)
        elif runtime == "openvino":
            from solov2.deploy.openvino import open_ir
            self._session, meta = open_ir(path, precision)
        else:
            self._session, meta = _open_torchscript(path)
        self.meta = meta
        self.with_postprocess = meta.get("postprocess") == "graph"
        self.input_size = tuple(meta["input_size"]) if meta["input_size"] else None
        self.transform = ImageTransform(**transform_fields(meta["transform"]))
        self.test_cfg = TestConfig(**meta["test_cfg"])
        self.class_names = meta.get("class_names")
        names = self.class_names or []
        self.label_names = [str(names[i]) if i < len(names) else f"class_{i}" for i in range(int(meta["num_classes"]))]
        self.kernel_size = int(meta["kernel_size"])
        self.cell_strides = cell_strides(meta["num_grids"], meta["strides"])

    def run(self, tensor: Tensor, image_size: Sequence[int] | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``(1, 3, H, W)`` float32 and the resized image's ``(h, w)`` inside it (default: all of it) -> the
        graph's outputs, ``(cate_scores, kernels, mask_feat)`` or with post-processing
        ``(scores, labels, mask_probs)``; a wrong size raises :class:`ExportError`."""
        shape = tuple(tensor.shape)
        d = self.transform.size_divisor
        if len(shape) != 4 or shape[:2] != (1, 3):
            raise ExportError(f"{self.path}: expects input (1, 3, H, W), got {shape}")
        if self.input_size is not None and shape[2:] != self.input_size:
            raise ExportError(f"{self.path}: expects input size {self.input_size[0]}x{self.input_size[1]} "
                              f"(H x W), got {shape[2]}x{shape[3]}")
        if shape[2] % d or shape[3] % d:
            raise ExportError(f"{self.path}: input size must be multiples of {d}, got {shape[2]}x{shape[3]}")
        size = tuple(int(s) for s in (image_size if image_size is not None else shape[2:]))
        if len(size) != 2 or not (0 < size[0] <= shape[2] and 0 < size[1] <= shape[3]):
            raise ExportError(f"{self.path}: image_size must be (h, w) within the input {shape[2]}x{shape[3]}, "
                              f"got {size}")
        if self.input_size is None and padded_size(size, d) != shape[2:]:
            raise ExportError(f"{self.path}: a dynamic graph takes the image padded to its own size "
                              f"{padded_size(size, d)[0]}x{padded_size(size, d)[1]} for image_size {size}, "
                              f"got {shape[2]}x{shape[3]}")
        if self._session is None:
            raise ExportError(f"{self.path}: this exported model was closed")
        x = tensor.detach().float().cpu().contiguous()
        feeds = {"input": x.numpy(), "image_size": torch.tensor(size, dtype=torch.int64).numpy()}
        outs = self._session.run(POSTPROCESSED_NAMES if self.with_postprocess else OUTPUT_NAMES, feeds)
        return tuple(torch.as_tensor(o) for o in outs)

    def close(self) -> None:
        """Release the runtime's session now (an OpenVINO compiled model and its infer request, an onnxruntime
        session) rather than whenever the garbage collector gets to it; the object cannot run afterwards."""
        session, self._session = self._session, None
        if session is not None and hasattr(session, "close"):
            session.close()

    def __enter__(self) -> "ExportedSOLOv2":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __call__(self, images: Sequence[Tensor]) -> list[dict[str, Tensor]]:
        check_images(images)
        results = []
        for image in images:
            tensor, meta = preprocess_for_export(self, image, self.input_size)
            outputs = self.run(tensor, meta["image_size"])
            if self.with_postprocess:
                results.append(instances_from_graph(outputs, meta, self.test_cfg.mask_thr))
            else:
                results.append(postprocess_exported(outputs, meta, self.test_cfg, self.cell_strides,
                                                    self.kernel_size))
        return results







class _OnnxRuntimeSession:
    """The graph in onnxruntime's CPU provider."""

    def __init__(self, session):
        self._session = session

    def run(self, names: list[str], feeds: dict[str, Any]) -> list[Any]:
        return self._session.run(names, feeds)


class _TorchScriptSession:
    """A traced TorchScript module, run by torch."""

    def __init__(self, module):
        self._module = module

    def run(self, names: list[str], feeds: dict[str, Any]) -> list[Any]:
        with torch.no_grad():
            return list(self._module(torch.from_numpy(feeds["input"]), torch.from_numpy(feeds["image_size"])))


def _open_onnx(path: str):
    reason = missing_extra("onnxruntime")
    if reason:
        raise ExportError(f"{path}: running it {reason}")
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ExportError(f"{path}: onnxruntime cannot open it ({one_line(exc)})") from None
    meta = parse_meta(path, session.get_modelmeta().custom_metadata_map.get(META_KEY))
    return _OnnxRuntimeSession(session), meta


def _open_torchscript(path: str):
    import torchvision  # noqa: F401  (registers torchvision::deform_conv2d, which a DCN model's graph calls)
    extra = {META_KEY: ""}
    try:
        with quiet_deprecations():
            module = torch.jit.load(path, map_location="cpu", _extra_files=extra)
    except Exception as exc:
        raise ExportError(f"{path}: not a TorchScript file ({one_line(exc)})") from None
    return _TorchScriptSession(module.eval()), parse_meta(path, extra[META_KEY])


def check_same_model(exported: ExportedSOLOv2, model_cfg: dict, source: str) -> None:
    """An exported file given with a config (or checkpoint) must be a model of the same architecture's head and
    normalization: else a one-line :class:`ExportError` naming what differs. ``model_cfg``: the config's ``model``."""
    head, transform, meta = model_cfg.get("bbox_head") or {}, model_cfg.get("transform") or {}, exported.meta
    checks = [("num_classes", head.get("num_classes"), meta.get("num_classes")),
              ("num_grids", head.get("num_grids"), meta.get("num_grids")),
              ("strides", head.get("strides"), meta.get("strides")),
              ("kernel_size", head.get("kernel_size"), meta.get("kernel_size")),
              ("mean", transform.get("mean"), meta["transform"].get("mean")),
              ("std", transform.get("std"), meta["transform"].get("std"))]
    for name, theirs, ours in checks:
        if theirs is not None and ours is not None and list(_flat(theirs)) != list(_flat(ours)):
            raise ExportError(f"{exported.path}: not a model of {source}: its {name} is {ours}, "
                              f"{source} says {list(_flat(theirs))}")


def _flat(value: Any) -> Any:
    return value if isinstance(value, (list, tuple)) else [value]


def load_exported(path: str, precision: str = "fp32") -> ExportedSOLOv2:
    """Open a file of :mod:`solov2.deploy.export` in the runtime its suffix names (:data:`RUNTIMES`): ``.onnx``
    onnxruntime, ``.xml`` OpenVINO IR (``precision`` ``"fp32"`` or ``"bf16"``), any other suffix TorchScript."""
    return ExportedSOLOv2(path, precision)

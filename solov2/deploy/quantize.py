"""int8 post-training quantization of the OpenVINO IR with NNCF (``solov2 quantize``).

The checkpoint is exported as for ``--backend openvino`` (a dynamic ONNX graph, converted by OpenVINO), and
NNCF's ``nncf.quantize`` (OpenVINO backend, default ``PERFORMANCE`` preset: symmetric int8 weights and
activations) calibrates it on ``N`` images run through our own pre-processing, exactly as the exported contract
says (:func:`solov2.deploy.runtime.preprocess_for_export`: resize keeping the ratio to the test scale, normalize, pad at
the bottom/right). Calibration images: ``--images DIR``, or by default the training set named in the config
(``data.train``, without its random flips), ``N`` of them drawn with a fixed seed.

The IR's ``solov2`` metadata gets ``quantization``: ``{"precision": "int8", "method": ..., "calibration":
{"source": where the images came from, "count": N, "seed": 0}}``; a quantized IR without it is refused when
loaded (:func:`solov2.deploy.openvino.read_ir_meta`). Post-processing stays the shared float32 Python path.
"""
from __future__ import annotations

import os
import random
import tempfile
from typing import Sequence

import numpy as np
import torch
from torch import nn

from solov2.deploy.runtime import preprocess_for_export
from solov2.errors import ExportError

__all__ = ["calibration_images", "quantize_ir", "quantize_main"]

SEED = 0


def calibration_images(count: int, images_dir: str | None = None, data_cfg: dict | None = None,
                       seed: int = SEED) -> tuple[list, str]:
    """``count`` images to calibrate on (fewer if the source holds fewer), as a list of loaders (each a
    callable returning a ``(3, H, W)`` uint8 RGB tensor), and a description of their source for the metadata.

    ``images_dir``: the images in that folder (recursively); else ``data_cfg`` (a data set config, e.g. the
    training set's), with ``flip_prob`` 0: calibration sees the images as they are at test time."""
    if count <= 0:
        raise ValueError(f"--calib-images must be positive, got {count}")
    if images_dir is not None:
        from solov2.data.image import images_in_folder, read_rgb
        paths = images_in_folder(images_dir)
        chosen = sorted(random.Random(seed).sample(range(len(paths)), min(count, len(paths))))
        loaders = [lambda p=paths[i]: torch.from_numpy(read_rgb(p)).permute(2, 0, 1) for i in chosen]
        return loaders, os.path.abspath(images_dir)
    if data_cfg is None:
        raise ValueError("calibration needs --images DIR, or a config whose data.train names the training set")
    from solov2.data import build_dataset
    cfg = dict(data_cfg)
    cfg.pop("augment", None)  # calibrate on the images as they are: no copy-paste or jitter, and no flips
    if "flip_prob" in cfg:
        cfg["flip_prob"] = 0.0
    dataset = build_dataset(cfg)
    if len(dataset) == 0:
        raise ValueError(f"{cfg.get('ann_file') or cfg.get('root')}: the training set has no images to calibrate on")
    chosen = sorted(random.Random(seed).sample(range(len(dataset)), min(count, len(dataset))))
    loaders = [lambda i=i: dataset[i][0] for i in chosen]
    path = cfg.get("ann_file") or cfg.get("root")  # a file or folder; a generated data set has only its type
    return loaders, f"data.train {os.path.abspath(path) if isinstance(path, str) else cfg.get('type')}"


def cpu_has_vnni() -> bool:
    """Whether this CPU has an int8 dot-product instruction (AVX512-VNNI, AVX-VNNI or AMX-INT8; Linux flags).
    Without one, int8 products are summed in 16 bits and can saturate, so weights are quantized to 7 bits."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return any(f" {flag}" in flags for flag in ("avx512_vnni", "avx_vnni", "amx_int8"))


OVERFLOW_FIXES = ("auto", "enable", "first_layer_only", "disable")


def quantize_ir(model: nn.Module, loaders: Sequence, source: str, out_path: str,
                class_names: Sequence[str] | None = None, input_size: Sequence[int] | None = None,
                keep_fp32: Sequence[str] = (), preset: str = "performance", overflow_fix: str = "auto") -> str:
    """``model`` (a SOLOv2) -> an int8 OpenVINO IR at ``out_path`` (.xml), calibrated on ``loaders``
    (:func:`calibration_images`); dynamic input unless ``input_size`` (H, W) is given. Returns ``out_path``.

    ``overflow_fix`` (NNCF's): ``"enable"`` quantizes every layer's weights to 7 bits, which CPUs without VNNI need
    (their 8-bit products saturate: on an AVX2 CPU a planted mask fell to IoU 0.74 with 8-bit weights);
    ``"auto"`` chooses ``"enable"`` where this CPU has no VNNI (:func:`cpu_has_vnni`) and NNCF's default
    (first layer only) where it has. The choice is recorded in the IR's metadata."""
    from solov2.deploy.export import export_onnx
    from solov2.deploy.openvino import onnx_to_ir, require_openvino, save_ir, set_meta
    require_openvino(out_path, exporting=True)
    try:
        import nncf
    except ImportError:
        raise ExportError(f"{out_path}: quantizing needs nncf: pip install 'solov2[openvino]'") from None
    if not loaders:
        raise ValueError("no calibration images")
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(model, os.path.join(tmp, "model.onnx"), input_size, dynamic=input_size is None,
                                class_names=class_names)
        ir = onnx_to_ir(onnx_path)
    static = tuple(int(s) for s in input_size) if input_size is not None else None

    def feeds(load) -> dict[str, np.ndarray]:
        tensor, meta = preprocess_for_export(model, load(), static)
        return {"input": tensor.numpy(), "image_size": np.asarray(meta["image_size"], dtype=np.int64)}

    if overflow_fix not in OVERFLOW_FIXES:
        raise ValueError(f"overflow_fix must be one of {', '.join(OVERFLOW_FIXES)}, got {overflow_fix!r}")
    if overflow_fix == "auto":
        overflow_fix = "first_layer_only" if cpu_has_vnni() else "enable"
    ignored = nncf.IgnoredScope(patterns=list(keep_fp32), validate=False) if keep_fp32 else None
    advanced = nncf.AdvancedQuantizationParameters(overflow_fix=nncf.OverflowFix(overflow_fix))
    quantized = nncf.quantize(ir, nncf.Dataset(list(loaders), feeds), subset_size=len(loaders),
                              preset=nncf.QuantizationPreset(preset), ignored_scope=ignored,
                              advanced_parameters=advanced)
    meta = _meta_of(ir)
    meta["quantization"] = {
        "precision": "int8",
        "method": f"NNCF {nncf.__version__} post-training quantization (nncf.quantize, preset {preset})",
        "fp32_layers": list(keep_fp32),
        "overflow_fix": overflow_fix,
        "calibration": {"source": source, "count": len(loaders), "seed": SEED},
    }
    set_meta(quantized, meta)
    return save_ir(quantized, out_path)


def _meta_of(ir) -> dict:
    import json

    from solov2.deploy.contract import META_KEY
    return json.loads(ir.get_rt_info([META_KEY]).astype(str))


def quantize_main(config: str | None, checkpoint: str, calib_images: int, out: str, images_dir: str | None = None,
                  cfg_options=None, input_size: Sequence[int] | None = None, overflow_fix: str = "auto") -> str:
    """``solov2 quantize``: the checkpoint's int8 IR at ``out``."""
    from solov2.checkpoint.model_config import load_model, resolve_model
    resolved = resolve_model(config, checkpoint, cfg_options)
    model, _ = load_model(resolved.cfg, resolved.ckpt, name=resolved.checkpoint)
    data_cfg = None if images_dir else (resolved.cfg.get("data") or {}).get("train")
    loaders, source = calibration_images(calib_images, images_dir, data_cfg)
    return quantize_ir(model, loaders, source, out, resolved.classes, input_size, overflow_fix=overflow_fix)



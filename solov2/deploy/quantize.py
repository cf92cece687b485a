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

With a maximum drop (``--max-drop 0.005``), NNCF's accuracy-aware variant (``nncf.quantize_with_accuracy_control``)
quantizes the same way, then measures COCO mask AP on a validation set (by default ``N`` images of ``data.val``)
and returns the layers that cost the most mask AP to float32, one group at a time, until int8 is within the drop
of fp32. The metadata then adds ``accuracy_control``: the drop asked for, the validation set, and the fp32 and int8
mask AP that this module measured on it after NNCF finished (:class:`MaskAPValidation`, the same numbers
``solov2 eval`` gives for the two files on those images).
"""
from __future__ import annotations

import gc
import os
import random
import re
import tempfile
from typing import Sequence

import numpy as np
import torch
from torch import nn

from solov2.deploy.runtime import preprocess_for_export
from solov2.errors import ExportError

__all__ = ["calibration_images", "validation_subset", "MaskAPValidation", "quantize_ir", "quantize_main"]

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


def validation_subset(data_cfg: dict, count: int, seed: int = SEED):
    """The data set of ``data_cfg`` (``data.val``), cut to ``count`` of its images drawn with ``seed`` (all of them
    when it holds fewer): what ``--max-drop`` measures mask AP on. Returns ``(dataset, indices, source)``."""
    if count <= 0:
        raise ValueError(f"--val-images must be positive, got {count}")
    from solov2.data import build_dataset
    dataset = build_dataset(data_cfg)
    if len(dataset) == 0:
        raise ValueError(f"{data_cfg.get('ann_file') or data_cfg.get('root')}: the validation set has no images")
    indices = sorted(random.Random(seed).sample(range(len(dataset)), min(count, len(dataset))))
    path = data_cfg.get("ann_file") or data_cfg.get("root")
    return dataset, indices, f"data.val {os.path.abspath(path) if isinstance(path, str) else data_cfg.get('type')}"


class MaskAPValidation:
    """NNCF's ``validation_fn`` for :func:`quantize_ir`'s accuracy control: ``(compiled_model, indices) ->
    (mask AP, [mask AP of each image])``, the image-by-image values letting NNCF rank layers on the images that
    int8 hurts most.

    ``compiled_model``: an ``openvino.CompiledModel`` of the exported graph (outputs ``cate_scores``, ``kernels``,
    ``mask_feat``); ``indices``: positions in ``dataset`` (a COCO-format data set: ``img_ids``, ``cat_ids``,
    ``ground_truth()``). Each image goes through :func:`preprocess_for_export` and the shared post-processing of
    :func:`solov2.deploy.runtime.postprocess_exported`, as ``solov2 eval`` runs an exported file."""

    def __init__(self, model: nn.Module, dataset, input_size: Sequence[int] | None = None):
        from solov2.models.solov2_head import cell_strides
        head = model.bbox_head
        self.model, self.dataset, self.input_size = model, dataset, input_size
        self.strides = cell_strides(head.num_grids, head.strides)
        self.kernel_size = head.kernel_size
        self.ground_truth = dataset.ground_truth() if hasattr(dataset, "ground_truth") else dataset.coco.dataset

    def __call__(self, compiled, indices) -> tuple[float, list[float]]:
        from solov2.deploy.contract import OUTPUT_NAMES
        from solov2.deploy.runtime import postprocess_exported
        from solov2.evaluation.coco import results_to_coco
        per_image = []
        for i in indices:
            image, _ = self.dataset[int(i)]
            tensor, meta = preprocess_for_export(self.model, image, self.input_size)
            out = compiled({"input": tensor.numpy(), "image_size": np.asarray(meta["image_size"], dtype=np.int64)})
            outputs = [out[compiled.output(name)] for name in OUTPUT_NAMES]
            result = postprocess_exported(outputs, meta, self.model.test_cfg, self.strides, self.kernel_size)
            image_id = int(self.dataset.img_ids[int(i)])
            per_image.append((image_id, results_to_coco(result, image_id, self.dataset.cat_ids)))
        everything = self.mask_ap([r for _, image_results in per_image for r in image_results],
                                  [image_id for image_id, _ in per_image])
        return everything, [self.mask_ap(rs, [image_id]) for image_id, rs in per_image]

    def mask_ap(self, coco_results: list[dict], img_ids: list[int]) -> float:
        from solov2.evaluation.coco import evaluate_coco
        return evaluate_coco(self.ground_truth, coco_results, log=lambda _: None, img_ids=img_ids)["mask_AP"]


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
                keep_fp32: Sequence[str] = (), preset: str = "performance", overflow_fix: str = "auto",
                max_drop: float | None = None, validation: tuple | None = None, log=print) -> str:
    """``model`` (a SOLOv2) -> an int8 OpenVINO IR at ``out_path`` (.xml), calibrated on ``loaders``
    (:func:`calibration_images`); dynamic input unless ``input_size`` (H, W) is given. Returns ``out_path``.

    ``max_drop``: the most COCO mask AP (absolute, e.g. 0.005) that int8 may cost on ``validation`` (the
    ``(dataset, indices, source)`` of :func:`validation_subset`); NNCF's accuracy control keeps the layers that cost
    most in float32 until it does. The fp32 and int8 mask AP measured afterwards go to the metadata and to ``log``.

    ``overflow_fix`` (NNCF's): ``"enable"`` quantizes every layer's weights to 7 bits, which CPUs without VNNI need
    (their 8-bit products saturate: on an AVX2 CPU a planted mask fell to IoU 0.74 with 8-bit weights);
    ``"auto"`` chooses ``"enable"`` where this CPU has no VNNI (:func:`cpu_has_vnni`) and NNCF's default
    (first layer only) where it has. The choice is recorded in the IR's metadata."""
    from solov2.deploy.export import export_onnx
    from solov2.deploy.openvino import onnx_to_ir, repair_signal_stack, require_openvino, save_ir, set_meta
    require_openvino(out_path, exporting=True)
    try:
        import nncf
    except ImportError:
        raise ExportError(f"{out_path}: quantizing needs nncf: pip install 'solov2[openvino]'") from None
    if not loaders:
        raise ValueError("no calibration images")
    _check_options(max_drop, keep_fp32)
    if max_drop is not None and validation is None:
        raise ValueError("accuracy control (max_drop) needs a validation set")
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
    calibration = nncf.Dataset(list(loaders), feeds)
    common = dict(subset_size=len(loaders), preset=nncf.QuantizationPreset(preset), ignored_scope=ignored)
    control = None
    if max_drop is None:
        quantized = nncf.quantize(ir, calibration, advanced_parameters=advanced, **common)
        method = f"NNCF {nncf.__version__} post-training quantization (nncf.quantize, preset {preset})"
    else:
        quantized, control = _with_accuracy_control(ir, model, calibration, validation, static, max_drop, log,
                                                    advanced_quantization_parameters=advanced, **common)
        method = (f"NNCF {nncf.__version__} post-training quantization with accuracy control "
                  f"(nncf.quantize_with_accuracy_control, preset {preset})")
    meta = _meta_of(ir)
    meta["quantization"] = {
        "precision": "int8",
        "method": method,
        "fp32_layers": list(keep_fp32),
        "overflow_fix": overflow_fix,
        "calibration": {"source": source, "count": len(loaders), "seed": SEED},
        **({"accuracy_control": control} if control else {}),
    }
    set_meta(quantized, meta)
    # NNCF's temporary Cores, freed now, can leave this thread's signal stack on freed memory (repair_signal_stack)
    gc.collect()
    repair_signal_stack()
    return save_ir(quantized, out_path)


def _with_accuracy_control(ir, model: nn.Module, calibration, validation: tuple, input_size, max_drop: float, log,
                           **options) -> tuple:
    """NNCF's accuracy-aware quantization of ``ir`` -> ``(quantized, record)``; the record's mask AP of both
    models is measured again here, on the whole validation set, after NNCF has chosen."""
    import nncf
    dataset, indices, source = validation
    validate = MaskAPValidation(model, dataset, input_size)
    quantized = nncf.quantize_with_accuracy_control(ir, calibration, nncf.Dataset(list(indices)), validate,
                                                    max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE, **options)
    fp32_ap, int8_ap = (validate(_compile_fp32(m), indices)[0] for m in (ir, quantized))
    log(f"quantize: mask AP on {source} ({len(indices)} images): fp32 {fp32_ap:.4f}, int8 {int8_ap:.4f} "
        f"(drop {fp32_ap - int8_ap:+.4f}, at most {max_drop} asked)")
    return quantized, {"metric": "mask_AP", "max_drop": max_drop, "fp32": round(fp32_ap, 4),
                       "int8": round(int8_ap, 4), "validation": {"source": source, "count": len(indices), "seed": SEED}}


def _check_options(max_drop: float | None, keep_fp32: Sequence[str]) -> None:
    if max_drop is not None and not 0 <= max_drop < 1:
        raise ValueError(f"--max-drop is the mask AP int8 may lose, from 0 to 1, got {max_drop}")
    for pattern in keep_fp32:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"--keep-fp32 {pattern!r}: not a regular expression ({exc})") from None


def _compile_fp32(model):
    """``model`` (an ``openvino.Model``) compiled for the CPU in float32, whatever the CPU would pick."""
    from solov2.deploy.openvino import shared_core
    return shared_core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})


def _meta_of(ir) -> dict:
    import json

    from solov2.deploy.contract import META_KEY
    return json.loads(ir.get_rt_info([META_KEY]).astype(str))


def quantize_main(config: str | None, checkpoint: str, calib_images: int, out: str, images_dir: str | None = None,
                  cfg_options=None, input_size: Sequence[int] | None = None, overflow_fix: str = "auto",
                  max_drop: float | None = None, val_images: int = 300, keep_fp32: Sequence[str] = ()) -> str:
    """``solov2 quantize``: the checkpoint's int8 IR at ``out``; with ``max_drop``, accuracy control on ``val_images``
    images of the config's ``data.val``."""
    from solov2.checkpoint.model_config import check_eval_classes, load_model, resolve_model
    from solov2.errors import ConfigError
    _check_options(max_drop, keep_fp32)
    resolved = resolve_model(config, checkpoint, cfg_options)
    model, _ = load_model(resolved.cfg, resolved.ckpt, name=resolved.checkpoint)
    data = resolved.cfg.get("data") or {}
    validation = None
    if max_drop is not None:
        if data.get("val") is None:
            raise ConfigError(f"{config or checkpoint}: --max-drop measures mask AP on data.val, which is not set; "
                              f"set it with --cfg-options data.val.ann_file=... data.val.img_prefix=...")
        validation = validation_subset(data["val"], val_images)
        check_eval_classes(resolved, validation[0], "data.val")
    loaders, source = calibration_images(calib_images, images_dir, None if images_dir else data.get("train"))
    return quantize_ir(model, loaders, source, out, resolved.classes, input_size, keep_fp32=keep_fp32,
                       overflow_fix=overflow_fix, max_drop=max_drop, validation=validation)



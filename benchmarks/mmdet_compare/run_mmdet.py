"""MMDetection 3.3 SOLOv2 light R50-FPN (8 classes, random weights) on CPU, beside ours in the same process.

Run it with the interpreter of the separate venv made by ``setup.sh`` (torch comes from our venv, so both
models use the very same torch build)::

    /tmp/mmdet-venv/bin/python benchmarks/mmdet_compare/run_mmdet.py --threads 2 --sizes 448 --iters 10

Unless ``--no-ours`` is given, our ``solov2`` (imported from this checkout) is timed in the same loop,
interleaved, on the same image, as ``solov2.Predictor`` variants (``--predictor``; ``PREDICTOR_VARIANTS``):
its defaults (``pred_default``: precision "auto", this machine's tuned Winograd choices), fp32, fp32 with the
fixed Winograd rule, and each exported-graph backend this checkout has (onnxruntime, openvino fp32 / bf16, and
an OpenVINO int8 IR that ``solov2.deploy.quantize`` makes of each scenario's model, calibrated on 8 built-in shapes
images); and, on
request, our model called directly (``--ours``; see ``build_our_variants``): as built, optimized, bf16.
Unless ``--random-mmdet`` is given, MMDetection's model gets *our* random weights (the parameter names map one
to one), so both produce the same detections; the script prints the
largest difference of the network outputs as a check that the two are the same network.

Measured per model, like ``benchmarks/model_speed.py``:

* network: MMDetection ``model._forward(batch_inputs)`` (backbone, FPN, ``SOLOV2Head.forward``) on the
  batch its data preprocessor makes; ours ``forward_features`` on the batch our transform makes.
* e2e: MMDetection's test pipeline (``Resize`` keep-ratio, ``PackDetInputs``) + ``model.test_step``
  (preprocessor, network, ``predict_by_feat``, masks rescaled to the input), i.e. ``inference_detector``
  without its per-call module scan; ours ``model([image])``. Three scenarios (``SCENARIOS``): as initialised
  (no candidates), ten planted candidates on all levels (``e2e_10det``), and the category bias set to 0
  (``e2e_100det``: every cell a candidate, 100 detections out).
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import sys

import numpy as np
import torch

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
CONFIG = os.path.join(REPO, "configs/solov2/cityscapes/solov2_light_448_r50_fpn_2gpu_3x.py")


def mmdet_model_cfg(num_classes: int = 8) -> dict:
    """SOLOv2 light R50-FPN in MMDetection 3.x terms (as its solov2-light_r50_fpn_ms-3x_coco config)."""
    gn = dict(type="GN", num_groups=32, requires_grad=True)
    return dict(
        type="SOLOv2",
        data_preprocessor=dict(type="DetDataPreprocessor", mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_size_divisor=32),
        backbone=dict(type="ResNet", depth=50, num_stages=4, out_indices=(0, 1, 2, 3), frozen_stages=1,
                      style="pytorch", init_cfg=None),  # random weights, nothing downloaded
        neck=dict(type="FPN", in_channels=[256, 512, 1024, 2048], out_channels=256, start_level=0, num_outs=5),
        mask_head=dict(
            type="SOLOV2Head", num_classes=num_classes, in_channels=256, feat_channels=256, stacked_convs=2,
            strides=[8, 8, 16, 32, 32], scale_ranges=((1, 56), (28, 112), (56, 224), (112, 448), (224, 896)),
            pos_scale=0.2, num_grids=[40, 36, 24, 16, 12], cls_down_index=0, norm_cfg=gn,
            mask_feature_head=dict(feat_channels=128, start_level=0, end_level=3, out_channels=128,
                                   mask_stride=4, norm_cfg=gn),
            loss_mask=dict(type="DiceLoss", use_sigmoid=True, loss_weight=3.0),
            loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0)),
        test_cfg=dict(nms_pre=500, score_thr=0.1, mask_thr=0.5, filter_thr=0.05, kernel="gaussian", sigma=2.0,
                      max_per_img=100))


def build_mmdet(num_classes: int = 8):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.logging import MMLogger
    register_all_modules()
    from mmengine.config import ConfigDict
    model = MODELS.build(ConfigDict(mmdet_model_cfg(num_classes)))  # the head reads test_cfg.score_thr
    MMLogger.get_current_instance().setLevel(logging.WARNING)  # init_weights logs every parameter
    model.init_weights()
    return model.eval()


def build_pipeline(h: int, w: int):
    from mmcv.transforms import Compose
    return Compose([dict(type="mmdet.LoadImageFromNDArray"),
                    dict(type="mmdet.Resize", scale=(w, h), keep_ratio=True),
                    dict(type="mmdet.PackDetInputs",
                         meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor"))])


def copy_our_weights(ours: torch.nn.Module, mmdet: torch.nn.Module) -> None:
    """Load our weights into MMDetection's model through ``solov2.checkpoint.convert`` (ours -> mmdet names),
    strictly."""
    from solov2.checkpoint.convert import convert_to_source
    state, unmapped = convert_to_source(ours.state_dict(), "mmdet")
    if unmapped:
        raise RuntimeError(f"solov2.checkpoint.convert could not map {unmapped}")
    mmdet.load_state_dict(state, strict=True)


def build_ours(config: str):
    sys.path.insert(0, REPO)
    from solov2 import build_model, load_config
    torch.manual_seed(0)
    return build_model(load_config(config)).eval()


def check_same_network(ours, mmdet, padded: torch.Tensor) -> float:
    """Largest |difference| between the two networks' outputs on the same padded batch."""
    cate, kern, feat = ours.forward_features(padded)
    mm_kern, mm_cate, mm_feat = mmdet._forward(padded)[0]
    pairs = list(zip(cate, mm_cate)) + list(zip(kern, mm_kern)) + [(feat, mm_feat)]
    return max((a - b).abs().max().item() for a, b in pairs)


def check_converter(mm, config: str) -> dict:
    """MMDetection's own random weights -> ``solov2.checkpoint.convert`` -> ours: same outputs and same instances?

    The issue's requirement for the converter: a converted MMDetection 3.x checkpoint gives the same
    predictions in our code as in MMDetection. Returns the unmapped keys, the largest difference of the
    network outputs on one batch, and both models' instances with FEW planted candidates.
    """
    from solov2.checkpoint.convert import convert_state_dict
    ours = build_ours(config)
    state, unmapped = convert_state_dict(mm.state_dict(), "mmdet")
    ours.load_state_dict(state, strict=True)
    h, w = 320, 549
    rgb = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    ours.transform.test_scale = (w, h)
    mm = copy.deepcopy(mm)
    for conv in (ours.bbox_head.solo_cate, mm.mask_head.conv_cls):
        set_scenario(conv, "e2e_10det")
    pipeline = build_pipeline(h, w)
    with torch.inference_mode():
        padded = ours.transform([rgb])[0].tensors
        diff = check_same_network(ours, mm, padded)
        d = pipeline(dict(img=np.ascontiguousarray(rgb.permute(1, 2, 0).numpy()[:, :, ::-1]), img_id=0))
        theirs = mm.test_step(dict(inputs=[d["inputs"]], data_samples=[d["data_samples"]]))[0].pred_instances
        mine = ours([rgb])[0]
    return {"unmapped": unmapped, "max_abs_diff_network": diff, "instances": (len(mine["scores"]), len(theirs)),
            "same_labels": torch.equal(mine["labels"], theirs.labels),
            "max_abs_diff_scores": (mine["scores"] - theirs.scores).abs().max().item() if len(theirs) else 0.0,
            "min_mask_iou": min(((a & b).sum() / (a | b).sum()).item()
                                for a, b in zip(mine["masks"], theirs.masks.bool())) if len(theirs) else 1.0}


OURS_VARIANTS = ("ours", "ours_fast", "ours_bf16")
# solov2.Predictor as a user runs it (`Predictor(config, checkpoint, **kwargs)`): its defaults, fp32, the fixed
# Winograd rule instead of this machine's tuned choices, and each exported-graph backend this checkout has.
PREDICTOR_VARIANTS = {"pred_default": {}, "pred_fp32": {"precision": "fp32"},
                      "pred_fp32_untuned": {"precision": "fp32", "tune": False},
                      "pred_onnxruntime": {"backend": "onnxruntime"}, "pred_openvino": {"backend": "openvino"},
                      "pred_openvino_bf16": {"backend": "openvino", "precision": "bf16"},
                      "pred_openvino_int8": {"backend": "openvino", "int8": True}}
# The seed network's arithmetic at 448x768 (the figure: 95 of them backbone + FPN), for the fraction
# of the CPU's peak that a path reaches in the 10-detection case, where every branch runs.
NETWORK_GFLOP_448 = 137.0


def available_predictor_variants() -> list[str]:
    """The PREDICTOR_VARIANTS whose backend is in ``solov2.inference.predictor.BACKENDS`` and installed (with onnx, to
    export to it; with nncf for int8)."""
    import importlib.util
    sys.path.insert(0, REPO)
    from solov2.deploy.contract import missing_extra
    from solov2.inference.predictor import BACKENDS
    out = []
    for name, kwargs in PREDICTOR_VARIANTS.items():
        backend = kwargs.get("backend", "torch")
        if backend not in BACKENDS or (backend != "torch" and missing_extra(backend, exporting=True)):
            continue
        if kwargs.get("int8") and importlib.util.find_spec("nncf") is None:
            continue
        out.append(name)
    return out


# End-to-end scenarios, made the same way in both models through their category conv, so that both see the
# same candidates: "e2e" as initialised (category prior 0.01 < score_thr 0.1: no candidates, like an empty
# frame), "e2e_10det" with FEW cells planted as confident candidates on all five levels (a frame with a few
# objects), "e2e_100det" with the category bias at 0 (every cell a candidate; 100 detections come out).
SCENARIOS = ("e2e", "e2e_10det", "e2e_100det")
FEW = [(40, 5, 8, 0), (40, 22, 30, 2), (40, 30, 12, 1), (36, 18, 10, 0), (36, 8, 28, 3), (24, 12, 12, 5),
       (24, 3, 20, 1), (16, 8, 4, 0), (16, 10, 12, 4), (12, 6, 6, 7)]  # (grid S, row, col, class)


def set_scenario(cate_conv: torch.nn.Conv2d, scenario: str, num_classes: int = 8) -> None:
    """Make the category conv (ours ``bbox_head.solo_cate``, MMDetection's ``mask_head.conv_cls``) give
    ``scenario``'s candidates; the kernels and mask features stay the random ones."""
    if scenario == "e2e_100det":
        torch.nn.init.zeros_(cate_conv.bias)
    elif scenario == "e2e_10det":
        torch.nn.init.constant_(cate_conv.bias, -10.0)  # background cells: sigmoid(-10 + noise) ~ 0
        offsets = {}
        for grid, row, col, cls in FEW:
            offsets.setdefault(grid, torch.zeros(1, num_classes, grid, grid))[0, cls, row, col] = 13.0
        levels = [offsets[g] for g in sorted(offsets, reverse=True)]  # 40, 36, 24, 16, 12: the levels' order
        calls = [0]

        def plant(module, args, out):
            # Both heads run the category conv once per level, in level order: the call count says which level
            # (not the output's width, which an ONNX export's tracing does not see as a Python int).
            offset = levels[calls[0] % len(levels)]
            calls[0] += 1
            return out + offset.to(out)

        cate_conv.register_forward_hook(plant)


def build_our_variants(config: str) -> dict:
    """(variant, scenario) -> (model, autocast dtype or None).

    * ``ours``: the model as built (what ``model([image])`` runs), the same operations as MMDetection's.
    * ``ours_fast``: ``optimize_for_inference`` (BatchNorm folded, channels_last, Winograd), which
      ``solov2.Predictor`` and ``solov2 predict`` run by default; same results up to float rounding.
    * ``ours_bf16``: ``ours_fast`` under ``torch.autocast("cpu", torch.bfloat16)`` (``precision="bf16"``),
      post-processing in float32; slightly different results (docs/benchmarks.md).
    """
    from solov2.inference.optimize import optimize_for_inference
    base = build_ours(config)
    models = {}
    for scenario in SCENARIOS:
        plain, fast = copy.deepcopy(base), optimize_for_inference(base)
        for model in (plain, fast):
            set_scenario(model.bbox_head.solo_cate, scenario)
        models["ours", scenario] = (plain, None)
        models["ours_fast", scenario] = (fast, None)
        models["ours_bf16", scenario] = (fast, torch.bfloat16)
    return models


def _autocast(dtype):
    return torch.autocast("cpu", dtype=dtype, enabled=dtype is not None)


def build_predictor_variants(config: str, names: list[str]) -> dict:
    """(variant, scenario) -> a ``solov2.Predictor`` of our seed-weights model (the same weights as ``ours`` and as
    MMDetection's copy), made as a user makes one, from a checkpoint file; each scenario's category conv set as
    in ``set_scenario`` on the Predictor's own (optimized) model, before the first call (so an exported backend
    exports it with the planted candidates)."""
    import tempfile
    from unittest import mock

    from solov2 import Predictor, load_config
    from solov2.checkpoint.io import save_checkpoint
    predictors = {}
    with tempfile.TemporaryDirectory() as tmp:  # the Predictors read the checkpoint when made
        path = os.path.join(tmp, "seed_random.pth")
        save_checkpoint(path, build_ours(config), meta={"classes": [f"class{i}" for i in range(8)]})
        for name in names:
            kwargs = dict(PREDICTOR_VARIANTS[name])
            env = {} if kwargs.pop("tune", True) else {"SOLOV2_TUNE": "0"}  # 0: the fixed rule (inference.tuning)
            for scenario in SCENARIOS:
                if kwargs.get("int8"):
                    predictors[name, scenario] = int8_predictor(config, path, scenario, tmp)
                    continue
                with mock.patch.dict(os.environ, env):
                    predictor = Predictor(load_config(config), path, score_thr=0.0, **kwargs)
                set_scenario(predictor.model.bbox_head.solo_cate, scenario)
                predictors[name, scenario] = predictor
    return predictors


def int8_predictor(config: str, checkpoint: str, scenario: str, tmp: str):
    """A Predictor of the int8 OpenVINO IR that ``solov2 quantize`` makes of ``scenario``'s model (its category
    conv set first, so the IR holds the planted candidates), calibrated on 8 built-in shapes images (calibration
    only matters for accuracy: docs/benchmarks.md has int8's AP cost)."""
    from solov2 import Predictor, load_config
    from solov2.data.synthetic import write_shapes_coco
    from solov2.deploy.quantize import calibration_images, quantize_ir
    calib = os.path.join(tmp, "calibration")
    if not os.path.isdir(calib):
        write_shapes_coco(calib, num_images=8, seed=0, image_size=448)
    fp32 = Predictor(load_config(config), checkpoint, precision="fp32", optimize=False)
    set_scenario(fp32.model.bbox_head.solo_cate, scenario)
    loaders, source = calibration_images(8, os.path.join(calib, "images"))
    xml = quantize_ir(fp32.model, loaders, source, os.path.join(tmp, f"int8_{scenario}.xml"),
                      class_names=fp32.class_names)
    return Predictor(xml, score_thr=0.0)


def measure_size(short: int, args, mm: dict, ours: dict | None, preds: dict | None = None) -> dict:
    from solov2.apps.benchmark import summarize, time_interleaved  # noqa: F401  (ours is on sys.path)
    h, w = short, int(round(short * 768 / 448))
    rgb = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(h))
    bgr = np.ascontiguousarray(rgb.permute(1, 2, 0).numpy()[:, :, ::-1])  # what mmdet reads from a file
    pipeline = build_pipeline(h, w)
    data = pipeline(dict(img=bgr, img_id=0))
    batch = mm["e2e"].data_preprocessor(dict(inputs=[data["inputs"]], data_samples=[data["data_samples"]]), False)
    dets = {}

    def mm_e2e(model, name):
        def run():
            d = pipeline(dict(img=bgr, img_id=0))
            out = model.test_step(dict(inputs=[d["inputs"]], data_samples=[d["data_samples"]]))
            dets[name] = len(out[0].pred_instances)
        return run

    fns = {"mmdet_network": lambda: mm["e2e"]._forward(batch["inputs"])}
    fns.update({f"mmdet_{sc}": mm_e2e(mm[sc], f"mmdet_{sc}") for sc in SCENARIOS})
    out = {"network_input": list(batch["inputs"].shape)}
    if ours is not None:
        for model, _ in ours.values():
            model.transform.test_scale = (w, h)
        padded = ours["ours", "e2e"][0].transform([rgb])[0].tensors

        def ours_network(model, dtype):
            def run():
                with _autocast(dtype):
                    model.forward_features(padded)
            return run

        def ours_e2e(model, dtype, name):
            def run():
                image = torch.from_numpy(bgr[:, :, ::-1].copy()).permute(2, 0, 1)  # same input as mmdet's
                with _autocast(dtype):
                    dets[name] = len(model([image])[0]["scores"])
            return run

        for name in args.ours:
            fns[f"{name}_network"] = ours_network(*ours[name, "e2e"])
            fns.update({f"{name}_{sc}": ours_e2e(*ours[name, sc], f"{name}_{sc}") for sc in SCENARIOS})
        if not args.random_mmdet:
            with torch.inference_mode():
                out["max_abs_diff_network"] = check_same_network(ours["ours", "e2e"][0], mm["e2e"], padded)
    if preds:
        rgb_np = np.ascontiguousarray(bgr[:, :, ::-1])  # the Predictor takes (H, W, 3) uint8 RGB
        for predictor in preds.values():  # an int8 IR's Predictor has no torch model, only the IR's transform
            model = predictor.model if predictor.model is not None else predictor._exported
            model.transform.test_scale = (w, h)

        def pred_e2e(predictor, name):
            def run():
                dets[name] = len(predictor(rgb_np)["scores"])
            return run

        def pred_network(predictor):
            padded_p = predictor.model.transform([rgb])[0].tensors

            def run():
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=predictor.autocast_dtype is not None):
                    predictor.model.forward_features(padded_p)
            return run

        for name in sorted({n for n, _ in preds}, key=list(PREDICTOR_VARIANTS).index):
            if preds[name, "e2e"].backend == "torch":
                fns[f"{name}_network"] = pred_network(preds[name, "e2e"])
            fns.update({f"{name}_{sc}": pred_e2e(preds[name, sc], f"{name}_{sc}") for sc in SCENARIOS})
        out["precisions"] = {n: p.precision for (n, sc), p in preds.items() if sc == "e2e"}
    with torch.inference_mode():
        times = time_interleaved(fns, args.iters, args.warmup)
    for name, t in times.items():
        out[name] = summarize(t)
        if name in dets:
            out[name]["detections"] = dets[name]
    return out


def cpu_fp32_peak(threads: int) -> dict:
    """fp32 peak of ``threads`` cores: cores x FMA pipes x fp32 lanes per pipe x 2 (multiply and add) x clock.
    The clock is /proc/cpuinfo's ``cpu MHz`` (what the hypervisor reports; turbo would raise it). AMD family 25
    (Zen 3/4) runs AVX-512 on two 256-bit FMA pipes (8 fp32 lanes each); Intel AVX-512 server cores have two
    512-bit FMA pipes (16 lanes); other x86 with AVX2: two 256-bit pipes."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    mhz = float(info.get("cpu MHz", "nan"))
    flags = info.get("flags", "").split()
    amd = "AMD" in info.get("vendor_id", "") + info.get("model name", "")
    lanes = 16 if ("avx512f" in flags and not amd) else 8
    per_cycle = 2 * lanes * 2  # two FMA pipes, 2 flops per lane
    return {"cpu": info.get("model name"), "family": info.get("cpu family"), "model": info.get("model"),
            "mhz": mhz, "flops_per_cycle_per_core": per_cycle, "threads": threads,
            "gflops": threads * per_cycle * mhz / 1e3}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[448], help="short sides (long = short x 768/448)")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-ours", dest="with_ours", action="store_false", help="time MMDetection only")
    parser.add_argument("--ours", nargs="*", choices=OURS_VARIANTS, default=[],
                        help="our models timed directly (see build_our_variants; default none)")
    parser.add_argument("--predictor", nargs="*", choices=list(PREDICTOR_VARIANTS), default=None,
                        help="solov2.Predictor variants to time (default: every one this checkout can run; "
                             "see PREDICTOR_VARIANTS)")
    parser.add_argument("--peak-gflops", type=float, default=None,
                        help="the CPU's fp32 peak in GFLOP/s, for the fraction-of-peak column (default: computed "
                             "from /proc/cpuinfo, see cpu_fp32_peak)")
    parser.add_argument("--random-mmdet", action="store_true", help="keep MMDetection's own random init")
    parser.add_argument("--config", default=CONFIG, help="our config (for --with-ours)")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    import mmcv
    import mmdet
    sys.path.insert(0, REPO)  # solov2.apps.benchmark's timing helpers, and our model
    mm = build_mmdet()
    conversion = check_converter(mm, args.config)
    print(f"MMDetection's own weights through `solov2 convert --from mmdet`: unmapped keys {conversion['unmapped']}, "
          f"max |ours - mmdet| over network outputs {conversion['max_abs_diff_network']:.2e}, instances "
          f"{conversion['instances'][0]} vs {conversion['instances'][1]}, same labels {conversion['same_labels']}, "
          f"max score difference {conversion['max_abs_diff_scores']:.2e}, "
          f"min mask IoU {conversion['min_mask_iou']:.4f}")
    ours = build_our_variants(args.config) if args.with_ours and args.ours else None
    pred_names = (available_predictor_variants() if args.predictor is None else args.predictor) if args.with_ours \
        else []
    preds = build_predictor_variants(args.config, pred_names) if pred_names else None
    if not args.random_mmdet:
        copy_our_weights(build_ours(args.config), mm)  # the same seed: the weights of every `ours` model
    mm = {sc: copy.deepcopy(mm) for sc in SCENARIOS}
    for sc, model in mm.items():
        set_scenario(model.mask_head.conv_cls, sc)
    torch.set_num_threads(args.threads)  # after the imports: mmengine/cv2 may change threading on import
    load = os.getloadavg()[0]
    print(f"mmdet {mmdet.__version__}, mmcv {mmcv.__version__}, torch {torch.__version__}, {args.threads} threads, "
          f"iters {args.iters} (+{args.warmup} warm-up), 1-min load before: {load:.2f}")
    results = {"converter_check": conversion, "threads": args.threads, "iters": args.iters, "warmup": args.warmup,
               "torch": torch.__version__, "mmdet": mmdet.__version__, "mmcv": mmcv.__version__,
               "load_before": load, "sizes": {}}
    for short in args.sizes:
        r = measure_size(short, args, mm, ours, preds)
        for kind in ("network", *SCENARIOS):  # model_speed.py's plot reads these names
            r[kind] = r[f"mmdet_{kind}"]
        results["sizes"][str(short)] = r
        print(f"\ninput {short}x{int(round(short * 768 / 448))} (network input "
              f"{'x'.join(map(str, r['network_input']))})")
        if "max_abs_diff_network" in r:
            print(f"  same weights: max |ours - mmdet| over network outputs = {r['max_abs_diff_network']:.2e}")
        for kind in ("network", *SCENARIOS):
            for who in ("mmdet", *(args.ours if ours else ()), *pred_names):
                if f"{who}_{kind}" not in r:
                    continue
                s = r[f"{who}_{kind}"]
                dets = f"   {s['detections']} dets" if "detections" in s else ""
                ratio = r[f"mmdet_{kind}"]["median_ms"] / s["median_ms"]
                print(f"  {who + '_' + kind:<30}{s['median_ms']:>9.1f} ms median {s['p90_ms']:>9.1f} ms p90"
                      f"   mmdet/this {ratio:5.2f}x   this/mmdet {1 / ratio:5.2f}{dets}")
        peak = args.peak_gflops or cpu_fp32_peak(args.threads)["gflops"]
        gflop = NETWORK_GFLOP_448 * short * int(round(short * 768 / 448)) / (448 * 768)
        print(f"  fraction of the CPU's fp32 peak ({peak:.0f} GFLOP/s) in the 10-detection case "
              f"({gflop:.0f} GFLOP of network arithmetic, as the direct convolutions count it):")
        for who in ("mmdet", *(args.ours if ours else ()), *pred_names):
            t = r[f"{who}_e2e_10det"]["median_ms"] / 1e3
            r[f"{who}_e2e_10det"]["fraction_of_fp32_peak"] = gflop / t / peak
            print(f"    {who:<26}{gflop / t:7.0f} GFLOP/s = {gflop / t / peak:5.2f} of peak")
    results["cpu_peak"] = cpu_fp32_peak(args.threads)
    results["load_after"] = os.getloadavg()[0]
    print(f"\n1-min load after: {results['load_after']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

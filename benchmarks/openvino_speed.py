"""Latency of the backends on the seed network (448x768, random weights), timed interleaved in one process:
the torch Predictor in fp32 and bf16, OpenVINO fp32 / bf16 (``Predictor(backend="openvino")``) and
OpenVINO int8 (``solov2.deploy.quantize.quantize_ir``; calibrated on the images of ``--calib-dir``, which only matters
for speed here). Two scenarios as in benchmarks/mmdet_compare/: ``0det`` (the category prior, no candidates)
and ``10det`` (ten cells planted as confident candidates on all five levels, through the category conv, so
the exported graphs hold the same hook).

    OMP_NUM_THREADS=2 PYTHONPATH=. python benchmarks/openvino_speed.py --calib-dir DIR [--iters 9] [--threads 1]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from solov2 import Predictor, load_config  # noqa: E402
from solov2.apps.benchmark import time_interleaved  # noqa: E402
from solov2.deploy.quantize import calibration_images, quantize_ir  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "benchmarks", "mmdet_compare"))
from run_mmdet import set_scenario  # noqa: E402  (imports neither mmdet nor mmcv at module level)

CONFIG = os.path.join(ROOT, "configs/solov2/cityscapes/solov2_light_448_r50_fpn_2gpu_3x.py")


def plant(model, scenario: str) -> None:
    """``10det``: the ten candidates of run_mmdet.py's ``e2e_10det``, planted the same way (``set_scenario``)."""
    if scenario == "10det":
        set_scenario(model.bbox_head.solo_cate, "e2e_10det")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--calib-dir", required=True, help="images to calibrate int8 on")
    p.add_argument("--calib-images", type=int, default=8)
    p.add_argument("--iters", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, help="torch's and OpenVINO's threads (default: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)  # OpenVINO takes torch's count (solov2.deploy.openvino.open_ir)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    image = (F.interpolate(torch.rand(1, 3, 14, 24, generator=g), size=(448, 768), mode="bilinear")[0] * 255)
    image = image.to(torch.uint8).permute(1, 2, 0).numpy()
    cfg = load_config(CONFIG)
    fns, counts = {}, {}
    tmp = tempfile.mkdtemp()
    for scenario in ("0det", "10det"):
        variants = {"torch fp32": dict(precision="fp32"), "torch bf16": dict(precision="bf16"),
                    "openvino fp32": dict(backend="openvino"), "openvino bf16": dict(backend="openvino",
                                                                                     precision="bf16")}
        for name, kwargs in variants.items():
            torch.manual_seed(0)
            predictor = Predictor(cfg, **kwargs)
            plant(predictor.model, scenario)
            fns[(name, scenario)] = predictor
        torch.manual_seed(0)
        fp32 = Predictor(cfg, optimize=False)
        plant(fp32.model, scenario)
        loaders, source = calibration_images(args.calib_images, args.calib_dir)
        path = quantize_ir(fp32.model, loaders, source, os.path.join(tmp, f"int8_{scenario}.xml"))
        fns[("openvino int8", scenario)] = Predictor(path)
    calls = {k: (lambda pr=pr: pr(image)) for k, pr in fns.items()}
    for key, pr in fns.items():
        counts[key] = len(pr(image)["scores"])
    times = time_interleaved({f"{n} | {s}": f for (n, s), f in calls.items()}, args.iters, args.warmup)
    print(f"threads {torch.get_num_threads()}, 1-min load {os.getloadavg()[0]:.2f} after")
    print("| | 0 detections | 10 detections |\n|---|---:|---:|")
    for name in dict.fromkeys(n for n, _ in fns):
        cells = [f"{statistics.median(times[f'{name} | {s}']) * 1000:.0f} ms ({counts[(name, s)]} det)"
                 for s in ("0det", "10det")]
        print(f"| {name} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()

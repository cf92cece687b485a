"""Latency of the backends on the seed network (448x768, random weights), timed interleaved in one process:
the torch Predictor default (fp32) and bf16, OpenVINO fp32 / bf16 (``Predictor(backend="openvino")``) and
OpenVINO int8 (``solov2.quantize.quantize_ir``; calibrated on the images of ``--calib-dir``, which only matters
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
from solov2.benchmark import time_interleaved  # noqa: E402
from solov2.quantize import calibration_images, quantize_ir  # noqa: E402

CONFIG = os.path.join(ROOT, "configs/solov2/cityscapes/solov2_light_448_r50_fpn_2gpu_3x.py")
# (grid S, row, col, class): the candidates of benchmarks/mmdet_compare/run_mmdet.py's "e2e_10det".
FEW = [(40, 5, 8, 0), (40, 22, 30, 2), (40, 30, 12, 1), (36, 18, 10, 0), (36, 8, 28, 3), (24, 12, 12, 5),
       (24, 3, 20, 1), (16, 8, 4, 0), (16, 10, 12, 4), (12, 6, 6, 7)]


def plant(model, scenario: str) -> None:
    if scenario != "10det":
        return
    cate = model.bbox_head.solo_cate
    torch.nn.init.constant_(cate.bias, -10.0)
    offsets = {}
    for grid, row, col, cls in FEW:
        offsets.setdefault(grid, torch.zeros(1, 8, grid, grid))[0, cls, row, col] = 13.0
    # int(): under the exporter's trace a shape entry is not a plain int; every level's grid is in FEW.
    cate.register_forward_hook(lambda m, a, out: out + offsets[int(out.shape[-1])].to(out))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--calib-dir", required=True, help="images to calibrate int8 on")
    p.add_argument("--calib-images", type=int, default=8)
    p.add_argument("--iters", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, help="torch's and OpenVINO's threads (default: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)  # OpenVINO takes torch's count (solov2.openvino_ir.open_ir)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    image = (F.interpolate(torch.rand(1, 3, 14, 24, generator=g), size=(448, 768), mode="bilinear")[0] * 255)
    image = image.to(torch.uint8).permute(1, 2, 0).numpy()
    cfg = load_config(CONFIG)
    fns, counts = {}, {}
    tmp = tempfile.mkdtemp()
    for scenario in ("0det", "10det"):
        variants = {"torch fp32 (Predictor default)": dict(), "torch bf16": dict(precision="bf16"),
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

"""SOLOv2 light R50 (the Cityscapes config) against torchvision Mask R-CNN R50-FPN on CPU.

Both models have random weights and get the same random 448x768 image (or the sizes of ``--sizes``); both
run at that size (SOLOv2 ``test_scale=(768, 448)``, Mask R-CNN ``min_size=448, max_size=768``), under
``torch.inference_mode()``, with ``torch.set_num_threads(2)``. All variants are timed in one loop,
interleaved in rotating order, and the median of ``--iters`` calls after ``--warmup`` calls is reported.

Three measurements, because random weights make the two detectors find different numbers of objects:

* network alone: SOLOv2 ``forward_features`` on the padded, normalized batch, against Mask R-CNN's
  backbone + RPN + RoI heads (boxes, NMS, mask head on the <= 100 detections) on its transformed batch,
  i.e. without its image transform and mask pasting. A two-stage detector's network cannot be separated
  from its first-stage post-processing, which is why the RoI heads are in.
* end to end, weights as initialised: ``model([image])`` in eval mode. SOLOv2's category prior (0.01)
  is below its score threshold, so it detects nothing; Mask R-CNN returns 100 detections.
* end to end, 100 detections each: the same, with SOLOv2's category bias set to 0 so that every grid
  cell is a candidate (1000 go through the dynamic masks and Matrix NMS, 100 come out). This is the most
  post-processing SOLOv2 can do at this size, so it is SOLOv2's worst case.

    .venv/bin/python benchmarks/model_speed.py                        # 448x768, prints the table
    .venv/bin/python benchmarks/model_speed.py --sizes 320 448 512 640 800 --iters 5 \\
        --json /tmp/speed.json --plot docs/latency_vs_size.png --mmdet-json /tmp/mmdet.json
    .venv/bin/python benchmarks/model_speed.py --from-json /tmp/speed.json --plot docs/latency_vs_size.png
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from solov2 import build_model, load_config  # noqa: E402
from solov2.apps.benchmark import summarize, time_interleaved  # noqa: E402

CONFIG = "configs/solov2/cityscapes/solov2_light_448_r50_fpn_2gpu_3x.py"
GOAL = 1.5  # the target: SOLOv2 light 448 R50 at least 1.5x faster than Mask R-CNN R50-FPN


def long_side(short: int) -> int:
    """The 448x768 aspect ratio at another short side."""
    return int(round(short * 768 / 448))


def build_models(config: str):
    torch.manual_seed(0)
    solo = build_model(load_config(config)).eval()
    loaded = copy.deepcopy(solo)
    torch.nn.init.zeros_(loaded.bbox_head.solo_cate.bias)  # every cell a candidate (see the docstring)
    import torchvision
    # The reference model as it is (91 COCO classes; 9 would change its latency by ~1%).
    mrcnn = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None,
                                                               min_size=448, max_size=768).eval()
    return solo, loaded, mrcnn


def measure_size(solo, loaded, mrcnn, short: int, iters: int, warmup: int) -> dict:
    """Time every variant at ``short x long_side(short)``; returns summaries and detection counts."""
    h, w = short, long_side(short)
    for m in (solo, loaded):
        m.transform.test_scale = (w, h)
    mrcnn.transform.min_size, mrcnn.transform.max_size = (h,), w
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(h))
    padded = solo.transform([image])[0].tensors
    mr_images = mrcnn.transform([image.float() / 255])[0]
    dets = {}

    def mr_network():
        feats = mrcnn.backbone(mr_images.tensors)
        proposals, _ = mrcnn.rpn(mr_images, feats)
        return mrcnn.roi_heads(feats, proposals, mr_images.image_sizes)[0]

    def end_to_end(name, fn):
        def run():
            dets[name] = len(fn()[0]["scores"])
        return run

    fns = {
        "solov2_network": lambda: solo.forward_features(padded),
        "mrcnn_network": mr_network,
        "solov2_e2e": end_to_end("solov2_e2e", lambda: solo([image])),
        "mrcnn_e2e": end_to_end("mrcnn_e2e", lambda: mrcnn([image.float() / 255])),
        "solov2_e2e_100det": end_to_end("solov2_e2e_100det", lambda: loaded([image])),
    }
    with torch.inference_mode():
        times = time_interleaved(fns, iters, warmup)
    out = {name: summarize(t) for name, t in times.items()}
    for name, n in dets.items():
        out[name]["detections"] = n
    out["network_input"] = list(padded.shape)
    return out


def print_size(short: int, r: dict) -> None:
    h, w = short, long_side(short)
    print(f"\ninput {h}x{w} (network input {'x'.join(map(str, r['network_input']))})")
    print(f"{'variant':<22}{'median ms':>11}{'p90 ms':>10}{'dets':>6}")
    for name, s in r.items():
        if isinstance(s, dict):
            print(f"{name:<22}{s['median_ms']:>11.1f}{s['p90_ms']:>10.1f}{s.get('detections', '-'):>6}")
    rows = [("network alone", "mrcnn_network", "solov2_network"),
            ("end to end, as initialised", "mrcnn_e2e", "solov2_e2e"),
            ("end to end, 100 dets each", "mrcnn_e2e", "solov2_e2e_100det")]
    for label, mr, so in rows:
        ratio = r[mr]["median_ms"] / r[so]["median_ms"]
        verdict = "meets" if ratio >= GOAL else "misses"
        print(f"  {label:<28} Mask R-CNN / SOLOv2 = {r[mr]['median_ms']:.0f} / {r[so]['median_ms']:.0f} ms"
              f" = {ratio:.2f}x ({verdict} the {GOAL}x goal)")


def plot(results: dict, path: str, mmdet: dict | None) -> None:
    """Latency against input size: network alone, and end to end with a few detections.

    Mask R-CNN (and, without ``mmdet``, our model as built) come from ``results`` (this script's run); with
    ``mmdet`` (``run_mmdet.py --json``), MMDetection and our variants (``--ours`` and the Predictor's backends and
    precisions) come from that run, in which they were timed side by side.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharey=False)
    panels = [("network alone", "network", "mrcnn_network", "Mask R-CNN R50-FPN (torchvision)"),
              ("end to end: SOLOv2s with 10 detections", "e2e_10det", "mrcnn_e2e",
               "Mask R-CNN R50-FPN (torchvision), 100 detections")]
    ours = [("ours", "o-", "solov2 (ours), as built"), ("ours_fast", "o-", "solov2 (ours), optimized fp32"),
            ("ours_bf16", "o:", "solov2 (ours), precision bf16"),
            ("pred_default", "o-", "solov2 Predictor, default (bf16 on this CPU)"),
            ("pred_fp32", "o:", "solov2 Predictor, fp32"),
            ("pred_onnxruntime", "d-", "solov2 Predictor, onnxruntime (fp32)"),
            ("pred_openvino", "v-", "solov2 Predictor, OpenVINO fp32"),
            ("pred_openvino_bf16", "v:", "solov2 Predictor, OpenVINO bf16"),
            ("pred_openvino_int8", "x-", "solov2 Predictor, OpenVINO int8 IR")]

    def series(source: dict, key: str):
        sizes = sorted(int(s) for s in source["sizes"] if key in source["sizes"][s])
        return sizes, [source["sizes"][str(s)][key]["median_ms"] for s in sizes]

    for ax, (title, kind, mr, mr_label) in zip(axes, panels):
        if mmdet:
            for name, style, label in ours:
                if f"{name}_{kind}" in next(iter(mmdet["sizes"].values())):
                    ax.plot(*series(mmdet, f"{name}_{kind}"), style, label=label)
            ax.plot(*series(mmdet, f"mmdet_{kind}"), "^--", label="MMDetection 3.3 SOLOv2 light R50")
        elif kind == "network":
            ax.plot(*series(results, "solov2_network"), "o-", label="solov2 (ours), as built")
        if any(mr in r for r in results["sizes"].values()):  # a run_mmdet.py file given as --from-json has none
            ax.plot(*series(results, mr), "s-", label=mr_label)
        ax.set_title(title)
        ax.set_xlabel("input short side (long side = short x 768/448)")
        ax.set_ylabel("median latency, ms")
        ax.set_xticks(sorted(int(s) for s in results["sizes"]))
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"CPU, {results['threads']} threads, batch 1, random weights (SOLOv2 light R50, 8 classes)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("--sizes", nargs="+", type=int, default=[448], help="short sides (default 448)")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--plot", help="write latency against input size to this PNG")
    parser.add_argument("--mmdet-json", help="add the MMDetection series from run_mmdet.py --json")
    parser.add_argument("--from-json", help="measure nothing: plot the figures of an earlier --json run")
    args = parser.parse_args(argv)
    if args.from_json:
        with open(args.from_json) as f:
            results = json.load(f)
        _plot_if_asked(results, args)
        return 0
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    print(f"torch {torch.__version__}, {args.threads} threads, iters {args.iters} (+{args.warmup} warm-up), "
          f"1-min load before: {load_before[0]:.2f}")
    solo, loaded, mrcnn = build_models(args.config)
    results = {"threads": args.threads, "iters": args.iters, "warmup": args.warmup, "torch": torch.__version__,
               "load_before": load_before[0], "sizes": {}}
    for short in args.sizes:
        results["sizes"][str(short)] = r = measure_size(solo, loaded, mrcnn, short, args.iters, args.warmup)
        print_size(short, r)
    results["load_after"] = os.getloadavg()[0]
    print(f"\n1-min load after: {results['load_after']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    _plot_if_asked(results, args)
    return 0


def _plot_if_asked(results: dict, args) -> None:
    if args.plot:
        mmdet = None
        if args.mmdet_json:
            with open(args.mmdet_json) as f:
                mmdet = json.load(f)
        plot(results, args.plot, mmdet)


if __name__ == "__main__":
    sys.exit(main())

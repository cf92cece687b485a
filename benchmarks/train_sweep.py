"""Train several variants of a config side by side and print their mask AP.

The demo recipe and the shared-cell semantics were chosen with it:

    python benchmarks/train_sweep.py --variant lr2e-3 optimizer.lr=0.002 --variant lr4e-3 optimizer.lr=0.004 \\
        --common total_epochs=8 --seeds 0 1 --parallel 2 --threads 1 --amp
    python benchmarks/train_sweep.py --variants my_variants.py --parallel 4

Variants come from the command line (``--config``, default the demo config; ``--common``; one ``--variant NAME
KEY=VALUE ...`` per run) or from a variants file, which defines ``CONFIG`` (a config path or name), ``COMMON``
(``--cfg-options`` for every run), ``VARIANTS`` (name -> extra ``--cfg-options``) and optionally
``TRAIN_IMAGES``, ``VAL_IMAGES``, ``IMAGE_SIZE``, ``SHAPES`` (``write_shapes_coco`` keywords: ``classes``,
``object_size``) and ``SEEDS`` (the train and val sets' seeds, default 0 and 1) of the generated data, which is
made first if missing. ``--seeds`` runs every variant once per seed and ends with a table of each variant's mean
and standard deviation over the seeds. Each run trains in its own process into ``--out/NAME``; the table gives
mask AP, AP50, the last logged loss_ins and the minutes each run took.
"""
from __future__ import annotations

import argparse
import json
import os
import runpy
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = "configs/demo/solov2_light_r18_shapes.py"


def data_options(data: str) -> list[str]:
    return [f"data.train.ann_file={data}/train/annotations.json", f"data.train.img_prefix={data}/train/images",
            f"data.val.ann_file={data}/val/annotations.json", f"data.val.img_prefix={data}/val/images",
            f"data.test.ann_file={data}/val/annotations.json", f"data.test.img_prefix={data}/val/images"]


def make_data(data: str, train_images: int, val_images: int, image_size: int, seeds=(0, 1), **shapes) -> None:
    from solov2.data.synthetic import write_shapes_coco
    for split, n, seed in (("train", train_images, seeds[0]), ("val", val_images, seeds[1])):
        if not os.path.exists(f"{data}/{split}/annotations.json"):
            write_shapes_coco(f"{data}/{split}", num_images=n, seed=seed, image_size=image_size, **shapes)


def run_one(name: str, options: list[str], args, config: str) -> dict:
    work = os.path.join(args.out, name)
    if os.path.exists(os.path.join(work, "metrics.json")) and not args.rerun:  # finished in an earlier sweep
        return finished_row(name, work, 0, minutes=float("nan"))
    cmd = [sys.executable, "-m", "solov2.cli", "train", config, "--work-dir", work, "--device", args.device,
           "--cfg-options", *options] + (["--amp"] if args.amp else [])
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONUNBUFFERED="1")
    start = time.time()
    with open(os.path.join(args.out, f"{name}.log"), "w") as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    return finished_row(name, work, rc, (time.time() - start) / 60)


def finished_row(name: str, work: str, rc: int, minutes: float) -> dict:
    metrics_file = os.path.join(work, "metrics.json")
    metrics = json.load(open(metrics_file)) if os.path.exists(metrics_file) else {}
    loss_ins = None
    train_log = os.path.join(work, "train.log")
    if os.path.exists(train_log):
        for line in open(train_log):
            if "loss_ins:" in line:
                loss_ins = float(line.split("loss_ins:")[1].split()[0])
    row = {"name": name, "rc": rc, "minutes": minutes, "AP": metrics.get("mask_AP"),
           "AP50": metrics.get("mask_AP50"), "loss_ins": loss_ins}
    print(f"finished {row}", flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", help="a variants file (see the module docstring)")
    p.add_argument("--config", help=f"the config to vary (default: the file's CONFIG, else {DEMO_CONFIG})")
    p.add_argument("--common", nargs="*", default=[], metavar="KEY=VALUE", help="--cfg-options of every run")
    p.add_argument("--variant", nargs="+", action="append", default=[], metavar=("NAME", "KEY=VALUE"),
                   help="one run: its name, then its --cfg-options (repeat for more runs)")
    p.add_argument("--seeds", type=int, nargs="+", help="run every variant once per seed (NAME_seedN, seed=N)")
    p.add_argument("--only", nargs="*", help="run only these variants (NAME, or NAME_seedN: one seed), in this order")
    p.add_argument("--data", default="runs/demo/data", help="demo data folder (made if missing)")
    p.add_argument("--out", default="runs/sweep", help="one work dir per variant below this folder")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--amp", action="store_true", help="mixed precision (bf16 on CPU, fp16 on CUDA)")
    p.add_argument("--parallel", type=int, default=1, help="runs at a time")
    p.add_argument("--threads", type=int, default=2, help="OMP threads per run")
    p.add_argument("--rerun", action="store_true",
                   help="train again the variants whose work dir already has metrics.json (default: reuse them)")
    p.add_argument("--summary", metavar="SWEEP_JSON", help="only print the per-variant summary of a finished sweep")
    args = p.parse_args()
    if args.summary:
        rows = json.load(open(args.summary))
        seeds = sorted({int(r["name"].rsplit("_seed", 1)[1]) for r in rows if "_seed" in r["name"]})
        return print_seed_summary(rows, seeds)
    spec = runpy.run_path(args.variants) if args.variants else {}
    config = args.config or spec.get("CONFIG", DEMO_CONFIG)
    variants = dict(spec.get("VARIANTS", {}))
    variants.update({name: options for name, *options in args.variant})
    if not variants:
        p.error("no variants: give --variant NAME KEY=VALUE ... or --variants FILE")
    if args.only:  # in the order given; a variant name, with or without its _seedN
        unknown = [k for k in args.only if variant_of(k) not in variants]
        if unknown:
            p.error(f"--only: no variant named {', '.join(unknown)} (known: {', '.join(variants)})")
    if args.seeds:
        variants = {f"{name}_seed{seed}": [*options, f"seed={seed}"]
                    for name, options in variants.items() for seed in args.seeds}
    if args.only:
        variants = {k: v for name in args.only for k, v in variants.items()
                    if name in (k, variant_of(k))}
    make_data(args.data, spec.get("TRAIN_IMAGES", 1000), spec.get("VAL_IMAGES", 100), spec.get("IMAGE_SIZE", 128),
              spec.get("SEEDS", (0, 1)), **spec.get("SHAPES", {}))
    os.makedirs(args.out, exist_ok=True)
    common = data_options(os.path.abspath(args.data)) + list(spec.get("COMMON", [])) + args.common
    with ThreadPoolExecutor(args.parallel) as pool:
        rows = list(pool.map(lambda kv: run_one(kv[0], common + list(kv[1]), args, config), variants.items()))
    print("\n| variant | mask AP | AP50 | last loss_ins | minutes |\n|---|---:|---:|---:|---:|")
    for r in rows:
        ap = "failed (see log)" if r["rc"] else f"{r['AP']:.3f}"
        ap50 = "" if r["rc"] else f"{r['AP50']:.3f}"
        print(f"| {r['name']} | {ap} | {ap50} | {r['loss_ins']} | {r['minutes']:.1f} |")
    # Merged with the rows of earlier sweeps into the same folder, so that a partial sweep (--only) keeps them.
    path = os.path.join(args.out, "sweep.json")
    earlier = [r for r in (json.load(open(path)) if os.path.exists(path) else []) if r["name"] not in variants]
    json.dump(earlier + rows, open(path, "w"), indent=1)
    if args.seeds:
        print_seed_summary(rows, args.seeds)


def variant_of(run_name: str) -> str:
    """The variant of a run: ``NAME`` of ``NAME_seedN`` (a run without a seed is its variant)."""
    return run_name.rsplit("_seed", 1)[0]


def print_seed_summary(rows: list[dict], seeds: list[int]) -> None:
    """One line per variant: mask AP and AP50 as mean and sample standard deviation over the seeds."""
    import statistics
    print(f"\n| variant | mask AP (mean +- sd of {len(seeds)} seeds) | AP50 | per seed |\n|---|---:|---:|---|")
    names = dict.fromkeys(variant_of(r["name"]) for r in rows)
    for name in names:
        runs = [r for r in rows if variant_of(r["name"]) == name and not r["rc"]]
        if not runs:
            print(f"| {name} | failed (see logs) | | |")
            continue
        ap, ap50 = [r["AP"] for r in runs], [r["AP50"] for r in runs]
        sd = statistics.stdev(ap) if len(ap) > 1 else 0.0
        print(f"| {name} | {statistics.mean(ap):.3f} +- {sd:.3f} | {statistics.mean(ap50):.3f} | "
              f"{', '.join(f'{a:.3f}' for a in ap)} |")

if __name__ == "__main__":
    main()

"""``solov2 demo`` (``make demo``): built-in data -> train a small SOLOv2 on CPU -> mask AP -> pictures."""
from __future__ import annotations

import argparse
import os
import time

from solov2.apps.arguments import add_cfg_options, add_device, size
from solov2.apps.predict import predict_main
from solov2.config import find_config
from solov2.engine.launch import train_main
from solov2.precision import default_amp

__all__ = ["add_arguments", "main", "demo_main", "demo_recipe", "FP32_CPU_RECIPE"]

DEMO_CONFIG = "solov2_light_r18_shapes"  # a packaged config (solov2/configs/demo/), found by name
# The demo's recipe where it trains in fp32 on a CPU (no native bf16: AVX2-only CPUs, most laptops), so that it fits
# its 10 minutes there too: a ResNet-18 of half width in channels_last, trained 15 epochs instead of 14 at twice
# the learning rate. On a 2-core AVX2-only EPYC, fp32, 2 threads (docs/benchmarks.md, "The demo"): a step of 8
# images 0.20 s instead of 0.40 s; `solov2 demo` mask AP 0.518 in 8 min (16 epochs: 0.524, 30 s longer), where
# the config as it is gave 0.522 in about 15 min.
FP32_CPU_RECIPE = {"model.backbone.base_channels": 32, "model.neck.in_channels": [32, 64, 128, 256],
                   "optimizer.lr": 0.004, "total_epochs": 15, "lr_config.step": [14 / 15], "channels_last": True}


def demo_recipe(amp: bool | None, device: str = "cpu") -> tuple[dict, str]:
    """The demo's ``--cfg-options`` for this machine and the line that says which recipe runs.

    ``amp`` None means training's default (:func:`solov2.precision.default_amp`: bf16 autocast on CPUs with
    native bf16; ``SOLOV2_AMP`` pins it). Training in bf16, or on a GPU: the config as it is. Training in fp32 on a
    CPU: :data:`FP32_CPU_RECIPE`."""
    amp = default_amp(device) if amp is None else amp
    if device != "cpu":
        return {}, f"demo: {'fp16 autocast' if amp else 'fp32'} on {device}: the config's ResNet-18 (64..512 channels)"
    if amp:
        return {}, "demo: bf16 autocast on this CPU: the config's ResNet-18 (64..512 channels)"
    return dict(FP32_CPU_RECIPE), ("demo: fp32 on this CPU (no native bf16): ResNet-18 at half width "
                                   "(32..256 channels, model.backbone.base_channels=32), 15 epochs at lr 0.004, "
                                   "to fit 10 minutes")


def demo_main(out: str = "runs/demo", train_images: int = 1000, val_images: int = 100,
              image_size: int | tuple[int, int] = 128, cfg_options=None, amp: bool | None = None,
              device: str = "cpu") -> dict:
    """Built-in data -> train a small SOLOv2 on CPU (or ``device``) -> mask AP on the val split -> pictures in
    ``out``.

    ``amp``: bf16 autocast; None (default) uses it on CPUs that compute bf16 natively (where a step takes ~0.6x
    the fp32 time; ``solov2.precision.default_amp``); False for fp32. The recipe follows (:func:`demo_recipe`):
    in fp32 on a CPU the backbone is half as wide, so the demo fits its 10 minutes on either CPU class.
    ``image_size``: the built-in images' side, or their ``(H, W)``."""
    from solov2.data.synthetic import write_shapes_coco
    start = time.time()
    data_dir = os.path.join(out, "data")
    for split, n, seed in (("train", train_images, 0), ("val", val_images, 1)):
        if not os.path.exists(os.path.join(data_dir, split, "annotations.json")):
            write_shapes_coco(os.path.join(data_dir, split), num_images=n, seed=seed, image_size=image_size)
    options = {"data.train.ann_file": f"{data_dir}/train/annotations.json",
               "data.train.img_prefix": f"{data_dir}/train/images",
               "data.val.ann_file": f"{data_dir}/val/annotations.json",
               "data.val.img_prefix": f"{data_dir}/val/images",
               "data.test.ann_file": f"{data_dir}/val/annotations.json",
               "data.test.img_prefix": f"{data_dir}/val/images"}
    recipe, line = demo_recipe(amp, device)
    options.update(recipe)
    options.update(cfg_options or {})  # the user's options win over the recipe
    print(line, flush=True)
    config = find_config(DEMO_CONFIG)  # --amp on a CPU without native bf16: train_main warns that it is emulated
    metrics = train_main(config, work_dir=out, cfg_options=options, device=device, amp=amp)
    val_images_dir = os.path.join(data_dir, "val", "images")
    examples = sorted(os.listdir(val_images_dir))[:8]
    pictures = predict_main(config, os.path.join(out, "latest.pth"),
                            [os.path.join(val_images_dir, e) for e in examples],
                            out=os.path.join(out, "pictures"), score_thr=0.3, device=device)
    minutes = (time.time() - start) / 60
    print(f"\ndemo: mask AP {metrics.get('mask_AP', 0):.3f}, AP50 {metrics.get('mask_AP50', 0):.3f}, "
          f"AP75 {metrics.get('mask_AP75', 0):.3f} on {val_images} val images; {minutes:.1f} min; "
          f"{len(pictures)} pictures in {os.path.join(out, 'pictures')}")
    return metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="output folder (data, checkpoints, pictures)")
    parser.add_argument("--train-images", type=int, default=1000, help="built-in training images")
    parser.add_argument("--val-images", type=int, default=100, help="built-in validation images")
    parser.add_argument("--image-size", type=int, nargs="+", default=[128], metavar="SIZE",
                        help="the images' side, or H W")
    add_cfg_options(parser)
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction,
                        help="bf16 autocast (default: on for CPUs with native bf16, AVX512-BF16 or AMX)")
    add_device(parser, default="cpu")


def main(args: argparse.Namespace) -> None:
    from solov2.engine.launch import resolve_device
    demo_main(args.out, args.train_images, args.val_images, size(args.image_size), args.cfg_options, args.amp,
              resolve_device(args.device))

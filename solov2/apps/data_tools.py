"""The data tools: ``solov2 check-data`` (the report on a config's data before training), ``labelme-to-coco``,
``make-shapes`` and ``cityscapes-to-coco``."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from solov2.apps.arguments import add_cfg_options, size

__all__ = ["check_data_main", "labelme_to_coco_main", "make_shapes_main", "cityscapes_to_coco_main",
           "add_check_data_arguments", "add_labelme_arguments", "add_make_shapes_arguments",
           "add_cityscapes_arguments", "run_check_data", "run_labelme_to_coco", "run_make_shapes",
           "run_cityscapes_to_coco"]


def add_check_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="config file (.py) or a packaged config's name")
    add_cfg_options(parser)
    parser.add_argument("--split", default="train", choices=["train", "val", "test"], help="data.SPLIT of the "
                        "config (train: sizes at the middle training scale)")
    parser.add_argument("--out", help="folder for data_report.png (default: the work dir train would use)")


def run_check_data(args: argparse.Namespace) -> None:
    check_data_main(args.config, args.cfg_options, args.split, args.out)


def add_labelme_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="folder searched recursively for LabelMe *.json files")
    parser.add_argument("out_json", help="COCO JSON file to write")
    parser.add_argument("--image-root", help="file_name is relative to it (default: FOLDER); use it as img_prefix")


def run_labelme_to_coco(args: argparse.Namespace) -> None:
    labelme_to_coco_main(args.folder, args.out_json, args.image_root)


def add_make_shapes_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output folder (images/ and annotations.json)")
    parser.add_argument("--num-images", type=int, default=200, help="number of images")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the images")
    parser.add_argument("--image-size", type=int, nargs="+", default=[256], metavar="SIZE",
                        help="the images' side, or H W")


def run_make_shapes(args: argparse.Namespace) -> None:
    make_shapes_main(args.out, args.num_images, args.seed, size(args.image_size))


def add_cityscapes_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", help="Cityscapes folder with leftImg8bit/ and gtFine/")
    parser.add_argument("out_json", help="COCO JSON file to write")
    parser.add_argument("--split", default="train", help="Cityscapes split (train, val, ...)")


def run_cityscapes_to_coco(args: argparse.Namespace) -> None:
    cityscapes_to_coco_main(args.root, args.out_json, args.split)


def check_data_main(config: str, cfg_options=None, split: str = "train", out: str | None = None):
    """``solov2 check-data``: the data report of ``data.<split>`` (text on stdout, ``data_report.png`` in
    ``out``, default the work dir that ``train`` would use). Returns the :class:`~solov2.data.report.DataReport`."""
    import warnings

    from solov2.config import load_config
    from solov2.data import build_dataset
    from solov2.data.report import data_report, format_report, save_report_picture, training_scale
    from solov2.errors import ConfigError
    from solov2.models import head_scale_ranges
    cfg = load_config(config, cfg_options)
    if cfg.data.get(split) is None:
        sets = sorted(k for k in cfg.data if k in ("train", "val", "test"))
        raise ConfigError(f"{config}: data.{split} is not set; data has {sets}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # dropped annotations are listed by the report itself
        dataset = build_dataset(cfg.data[split])
    report = data_report(dataset, head_scale_ranges(cfg), training_scale(cfg) if split == "train" else None)
    print(format_report(report))
    out = out or cfg.get("work_dir") or os.path.join("work_dirs", Path(config).stem)
    print(f"wrote {save_report_picture(report, os.path.join(out, 'data_report.png'))}")
    return report


def labelme_to_coco_main(folder: str, out_json: str, image_root: str | None = None) -> dict:
    from solov2.data.labelme import labelme_to_coco
    data = labelme_to_coco(folder, out_json, image_root)
    print(f"wrote {out_json}: {len(data['images'])} images, {len(data['annotations'])} instances, "
          f"{len(data['categories'])} classes ({', '.join(c['name'] for c in data['categories'])}); "
          f"file_name is relative to {image_root or folder}")
    return data


def make_shapes_main(out: str, num_images: int = 200, seed: int = 0, image_size: int | tuple[int, int] = 256) -> str:
    """``solov2 make-shapes``: the built-in synthetic data set as a COCO folder; returns the annotation file."""
    from solov2.data.synthetic import write_shapes_coco
    path = write_shapes_coco(out, num_images=num_images, seed=seed, image_size=image_size)
    print(f"wrote {num_images} images to {out} ({path})")
    return path


def cityscapes_to_coco_main(root: str, out_json: str, split: str = "train") -> None:
    """``solov2 cityscapes-to-coco``: Cityscapes polygons of ``split`` -> one COCO instance JSON."""
    from solov2.data.cityscapes import cityscapes_to_coco
    cityscapes_to_coco(root, out_json, split)
    print(f"wrote {out_json}")

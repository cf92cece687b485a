"""The data tools: ``solov2 check-data`` (the report on a config's data before training), ``labelme-to-coco``,
``make-shapes`` and ``cityscapes-to-coco``."""
from __future__ import annotations

import argparse
import os
import sys
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
    parser.add_argument("--fit", action="store_true", help="also propose scale_ranges that spread the instances over "
                        "the FPN levels, and the --cfg-options line that trains with them")


def run_check_data(args: argparse.Namespace) -> None:
    check_data_main(args.config, args.cfg_options, args.split, args.out, args.fit)


def add_labelme_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="folder searched recursively for LabelMe *.json files")
    parser.add_argument("out_json", help="COCO JSON file to write")
    parser.add_argument("--image-root", help="file_name is relative to it (default: FOLDER); use it as img_prefix")
    parser.add_argument("--categories-from", metavar="COCO.json", help="use this file's category ids and names "
                        "(e.g. the training set's, for a val folder): a label it lacks is an error")


def run_labelme_to_coco(args: argparse.Namespace) -> None:
    labelme_to_coco_main(args.folder, args.out_json, args.image_root, args.categories_from)


def add_make_shapes_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output folder (images/ and annotations.json)")
    parser.add_argument("--num-images", type=int, default=200, help="number of images")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the images")
    parser.add_argument("--image-size", type=int, nargs="+", default=[256], metavar="SIZE",
                        help="the images' side, or H W")
    parser.add_argument("--classes", nargs="+", metavar="NAME",
                        help="draw only these shape classes (of disc, rectangle, triangle, ring, star)")
    parser.add_argument("--object-size", type=float, nargs=2, metavar=("MIN", "MAX"),
                        help="shape diameters in pixels (default 12 to 0.6 of the shorter image side)")


def run_make_shapes(args: argparse.Namespace) -> None:
    make_shapes_main(args.out, args.num_images, args.seed, size(args.image_size), args.classes, args.object_size)


def add_cityscapes_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", help="Cityscapes folder with leftImg8bit/ and gtFine/")
    parser.add_argument("out_json", help="COCO JSON file to write")
    parser.add_argument("--split", default="train", help="Cityscapes split (train, val, ...)")


def run_cityscapes_to_coco(args: argparse.Namespace) -> None:
    cityscapes_to_coco_main(args.root, args.out_json, args.split)


def check_data_main(config: str, cfg_options=None, split: str = "train", out: str | None = None, fit: bool = False):
    """``solov2 check-data``: the data report of ``data.<split>`` (text on stdout, ``data_report.png`` in
    ``out``, default the work dir that ``train`` would use). Returns the :class:`~solov2.data.report.DataReport`.

    Then the categories of data.val (and data.test) are compared with data.train's as training compares them
    (:func:`~solov2.checkpoint.model_config.resolve_classes`): names that differ, which training stops on,
    raise :class:`~solov2.errors.DataError` (one line, after the report); ids that differ under the same names
    are a warning line (training evaluates with data.val's ids, but a checkpoint carries data.train's).

    ``fit``: also propose ``scale_ranges`` that spread the instances over the FPN levels
    (:func:`~solov2.data.report.propose_scale_ranges` of the sizes at the training scale), with the report
    counted on them and the ``--cfg-options`` line that trains with them (``scale_ranges='auto'`` fits them
    when training starts). A config whose ranges are ``'auto'`` is reported with the fitted ones."""
    import warnings

    from solov2.config import load_config
    from solov2.data import build_dataset
    from solov2.data.augment import resolve_lsj_size, resolve_scales
    from solov2.data.report import data_report, format_report, save_report_picture, training_scale
    from solov2.errors import ConfigError
    from solov2.models import head_scale_ranges
    cfg = load_config(config, cfg_options)
    resolve_lsj_size(cfg)
    if cfg.data.get(split) is None:
        sets = sorted(k for k in cfg.data if k in ("train", "val", "test"))
        raise ConfigError(f"{config}: data.{split} is not set; data has {sets}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # dropped annotations are listed by the report itself
        dataset = build_dataset(cfg.data[split])
    if split == "train":
        resolve_scales(cfg, dataset, log=print)  # a small set's train scale, as training will use it
    scale = training_scale(cfg) if split == "train" else None
    ranges = head_scale_ranges(cfg)
    if fit or ranges == "auto":
        from solov2.data.report import fit_scale_ranges, format_scale_ranges
        num_levels = len((cfg.model.get("bbox_head") or {}).get("num_grids") or [None] * 5)
        try:
            proposal, fitted = fit_scale_ranges(dataset, scale, num_levels)
        except ValueError as exc:
            raise ConfigError(f"{config}: {exc}") from None
    if ranges == "auto":
        ranges = proposal
    report = data_report(dataset, ranges, scale)
    print(format_report(report))
    if fit:
        print(f"\nproposed scale_ranges, fitted to these {len(fitted.sizes)} instance sizes "
              f"(quantile boundaries, neighbouring ranges overlapping 2x):")
        print("\n".join(line for line in format_report(fitted).splitlines() if line.startswith("  ")))
        print(f"train with them: --cfg-options \"model.bbox_head.scale_ranges={format_scale_ranges(proposal)}\" "
              f"(or model.bbox_head.scale_ranges=auto, which fits them when training starts)")
    out = out or cfg.get("work_dir") or os.path.join("work_dirs", Path(config).stem)
    print(f"wrote {save_report_picture(report, os.path.join(out, 'data_report.png'))}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        _check_categories(cfg, dataset if split == "train" else None)
    return report


def _check_categories(cfg, train_dataset=None) -> None:
    """What training will say about data.val's / data.test's categories against data.train's, before it
    starts: a mismatch training stops on raises DataError; the rest are printed lines."""
    import copy

    from solov2.checkpoint.model_config import resolve_classes
    from solov2.data import build_dataset
    from solov2.errors import DataError
    if cfg.data.get("train") is None:
        return
    train = train_dataset if train_dataset is not None else build_dataset(cfg.data.train)
    built = {}

    def build(data_cfg):  # each set once, kept for the id comparison below
        key = repr(data_cfg)
        if key not in built:
            built[key] = build_dataset(data_cfg)
        return built[key]

    try:  # on a copy: resolve_classes sets the head's num_classes in the config
        resolve_classes(copy.deepcopy(cfg), train, log=print, build_dataset=build)
    except DataError as exc:
        raise DataError(f"{exc}; `solov2 train` stops on this (LabelMe data: convert val with `solov2 "
                        f"labelme-to-coco --categories-from TRAIN.json`)") from None
    except OSError as exc:  # data.val missing: training's evaluation will stop there
        print(f"WARNING: data.val not checked against data.train: {' '.join(str(exc).split())}")
        return
    train_ids = list(getattr(train, "cat_ids", None) or [])
    for split in ("val", "test"):
        data_cfg = cfg.data.get(split)
        if split == "test" and data_cfg == cfg.data.get("val"):
            continue  # said for data.val
        other = built.get(repr(data_cfg)) if data_cfg is not None else None
        ids = list(getattr(other, "cat_ids", None) or []) if other is not None else []
        if train_ids and ids and ids != train_ids and list(other.CLASSES) == list(train.CLASSES):
            print(f"WARNING: data.{split} has the categories of data.train under other ids ({ids} against "
                  f"{train_ids}): results written with a checkpoint's ids (data.train's) will not match "
                  f"data.{split}'s annotations; `solov2 labelme-to-coco --categories-from` gives one set of ids")


def labelme_to_coco_main(folder: str, out_json: str, image_root: str | None = None,
                         categories_from: str | None = None) -> dict:
    """``solov2 labelme-to-coco``: each skipped shape is one ``warning:`` line on stderr naming its file."""
    from solov2.data.labelme import labelme_to_coco
    data = labelme_to_coco(folder, out_json, image_root, categories_from,
                           warn=lambda line: print(f"warning: {line}", file=sys.stderr))
    source = f" (from {categories_from})" if categories_from else ""
    print(f"wrote {out_json}: {len(data['images'])} images, {len(data['annotations'])} instances, "
          f"{len(data['categories'])} classes{source} ({', '.join(c['name'] for c in data['categories'])}); "
          f"file_name is relative to {image_root or folder}")
    return data


def make_shapes_main(out: str, num_images: int = 200, seed: int = 0, image_size: int | tuple[int, int] = 256,
                     classes: list[str] | None = None, object_size: tuple[float, float] | None = None) -> str:
    """``solov2 make-shapes``: the built-in synthetic data set as a COCO folder; returns the annotation file."""
    from solov2.data.synthetic import write_shapes_coco
    from solov2.errors import DataError
    try:
        path = write_shapes_coco(out, num_images=num_images, seed=seed, image_size=image_size, classes=classes,
                                 object_size=object_size)
    except ValueError as e:
        raise DataError(f"make-shapes: {e}") from None
    print(f"wrote {num_images} images to {out} ({path})")
    return path


def cityscapes_to_coco_main(root: str, out_json: str, split: str = "train") -> None:
    """``solov2 cityscapes-to-coco``: Cityscapes polygons of ``split`` -> one COCO instance JSON."""
    from solov2.data.cityscapes import cityscapes_to_coco
    cityscapes_to_coco(root, out_json, split)
    print(f"wrote {out_json}")

"""A report on a training set before training: what the model will (and will not) learn from.

Counts images, instances per class, images without instances and the annotations dropped at load time
(with their ids and why), and compares instance sizes with the head's ``scale_ranges``: SOLOv2 trains an
instance on the FPN level(s) whose range holds ``sqrt(w * h)`` of its box *at the network input size*
(``solov2.targets``), so a level or a class that no instance reaches learns nothing. Everything is computed
from the annotations (pycocotools RLEs: box and area without decoding a mask), no image is read.

One call does it all (text to ``log``, ``data_report.png`` in ``work_dir``)::

    log_data_report(dataset, model.bbox_head.scale_ranges, training_scale(cfg), work_dir, log=logger.info)
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from pycocotools import mask as mask_utils

__all__ = ["DataReport", "data_report", "format_report", "save_report_picture", "log_data_report",
           "training_scale", "propose_scale_ranges", "fit_scale_ranges", "format_scale_ranges"]


@dataclass
class DataReport:
    """What :func:`data_report` found. Sizes are ``sqrt(w * h)`` of each instance's box in pixels at the
    network input (the image resized to ``input_scale``), the quantity ``scale_ranges`` is compared with."""

    classes: list[str]
    num_images: int  # in the annotation file
    num_used_images: int  # in the data set (images without instances are left out of training sets)
    images_without_instances: list  # the file's ids of images with no usable non-crowd instance
    instances_per_class: list[int]
    dropped: dict[str, list]  # reason -> annotation ids
    sizes: np.ndarray  # (N,) float, one per usable instance of the used images
    size_labels: np.ndarray  # (N,) int64 class of each size
    scale_ranges: list[tuple[float, float]]
    input_scale: tuple[int, int] | None  # (long, short) training scale the sizes are measured at; None: as is
    instances_per_level: list[int] = field(default_factory=list)
    class_level_counts: np.ndarray | None = None  # (C, L)
    outside_levels: int = 0  # instances no level's range holds
    warnings: list[str] = field(default_factory=list)



def training_scale(cfg) -> tuple[int, int] | None:
    """The middle one of ``model.transform.train_scales`` (sorted by short side), the scale sizes are
    reported at; None when the config has none (sizes are then reported at the images' own size)."""
    scales = ((cfg.get("model") or {}).get("transform") or {}).get("train_scales")
    if not scales:
        return None
    ordered = sorted((tuple(int(v) for v in s) for s in scales), key=lambda s: (min(s), max(s)))
    return ordered[len(ordered) // 2]


def data_report(dataset, scale_ranges: Sequence[tuple[float, float]], input_scale: tuple[int, int] | None = None
                ) -> DataReport:
    """Count what ``dataset`` (anything with ``ground_truth()`` (a COCO dict) or ``coco`` (pycocotools), and
    ``img_ids``, ``cat_ids`` and ``CLASSES``: ``CocoDataset``, ``CityscapesDataset``, ``SyntheticShapes``) holds
    for a head with ``scale_ranges``
    trained at ``input_scale`` ``(long, short)`` (see :func:`training_scale`)."""
    if not hasattr(dataset, "ground_truth") and not hasattr(dataset, "coco"):
        raise ValueError(f"data report: {type(dataset).__name__} has no 'coco' or 'ground_truth' (needs a "
                         f"COCO-style data set)")
    for attr in ("img_ids", "cat_ids", "CLASSES"):
        if not hasattr(dataset, attr):
            raise ValueError(f"data report: {type(dataset).__name__} has no '{attr}' (needs a COCO-style data set)")
    gt = dataset.ground_truth() if hasattr(dataset, "ground_truth") else dataset.coco.dataset
    cat2label = {c: i for i, c in enumerate(dataset.cat_ids)}
    original_id = getattr(dataset, "original_image_id", lambda i: i)
    dropped = {k: list(v) for k, v in (getattr(dataset, "problems", None) or {}).items()}
    used = set(dataset.img_ids)
    anns_of: dict = {}
    for ann in gt.get("annotations") or []:
        anns_of.setdefault(ann["image_id"], []).append(ann)
    images = {img["id"]: img for img in gt["images"]}
    sizes, labels, empty = [], [], []
    for img_id in sorted(images):
        info = images[img_id]
        anns = [a for a in anns_of.get(img_id, []) if not a.get("iscrowd", 0) and a["category_id"] in cat2label]
        rles = [_to_rle(a["segmentation"], info["height"], info["width"]) for a in anns]
        areas = mask_utils.area(rles) if rles else np.zeros(0)
        for ann, area in zip(anns, areas):
            if area == 0:  # a sliver polygon that covers no pixel: CocoDataset drops it when loading the image
                dropped.setdefault("covers no pixel", []).append(ann["id"])
        kept = [(a, r) for a, r, area in zip(anns, rles, areas) if area > 0]
        if not kept:
            empty.append(original_id(img_id))
        if img_id not in used or not kept:
            continue
        factor = _resize_factor(info["height"], info["width"], input_scale)
        boxes = mask_utils.toBbox([r for _, r in kept])  # (K, 4) x, y, w, h in pixels (w = x2 - x1 + 1)
        sizes += (np.sqrt(boxes[:, 2] * boxes[:, 3]) * factor).tolist()
        labels += [cat2label[a["category_id"]] for a, _ in kept]
    report = DataReport(classes=[str(c) for c in dataset.CLASSES], num_images=len(images),
                        num_used_images=len(dataset.img_ids), images_without_instances=empty,
                        instances_per_class=np.bincount(np.asarray(labels, dtype=np.int64),
                                                        minlength=len(dataset.cat_ids)).tolist(),
                        dropped=dropped, sizes=np.asarray(sizes, dtype=np.float64),
                        size_labels=np.asarray(labels, dtype=np.int64),
                        scale_ranges=[tuple(float(v) for v in r) for r in scale_ranges], input_scale=input_scale)
    _count_levels(report)
    return report


def _to_rle(segm, height: int, width: int) -> dict:
    """A COCO segmentation (polygons, uncompressed or compressed RLE) as a compressed RLE (as ``COCO.annToRLE``)."""
    if isinstance(segm, list):
        return mask_utils.merge(mask_utils.frPyObjects(segm, height, width))
    if isinstance(segm["counts"], list):
        return mask_utils.frPyObjects(segm, height, width)
    return segm


def _resize_factor(h: int, w: int, scale: tuple[int, int] | None) -> float:
    if scale is None:
        return 1.0
    # the same rule as ImageTransform (mmcv's keep_ratio); the int rounding of the output size is ignored
    return min(max(scale) / max(h, w), min(scale) / min(h, w))


def _count_levels(report: DataReport) -> None:
    s = report.sizes
    in_level = np.stack([(s >= lo) & (s <= hi) for lo, hi in report.scale_ranges], 1) if len(report.scale_ranges) \
        else np.zeros((len(s), 0), bool)  # (N, L): ranges overlap, an instance can be on two levels
    report.instances_per_level = in_level.sum(0).tolist()
    report.class_level_counts = np.stack([in_level[report.size_labels == c].sum(0)
                                          for c in range(len(report.classes))]) if report.classes else \
        np.zeros((0, len(report.scale_ranges)), np.int64)
    report.outside_levels = int((~in_level.any(1)).sum()) if len(s) else 0
    for name, n in zip(report.classes, report.instances_per_class):
        if n == 0:
            report.warnings.append(f"class '{name}' has no instance: the model cannot learn it")
    for c, name in enumerate(report.classes):
        if report.instances_per_class[c] and report.class_level_counts[c].sum() == 0:
            report.warnings.append(f"class '{name}': no instance falls in any level's scale range")
    for level, ((lo, hi), n) in enumerate(zip(report.scale_ranges, report.instances_per_level)):
        if n == 0:
            report.warnings.append(f"FPN level {level} (sizes {lo:g}..{hi:g} px) gets no instance: it learns nothing")
    if report.outside_levels:
        report.warnings.append(f"{report.outside_levels} instance(s) fall outside every level's scale range and "
                               f"are not trained on (see model.bbox_head.scale_ranges)")
    if report.dropped:
        report.warnings.append(f"{sum(len(v) for v in report.dropped.values())} annotation(s) dropped (listed above)")


def format_report(report: DataReport, max_ids: int = 20) -> str:
    """The report as text lines: images, instances per class, dropped annotations, sizes per level, warnings."""
    def ids(values) -> str:
        values = list(values)
        return ", ".join(str(v) for v in values[:max_ids]) + (f", ... ({len(values)} in all)" if len(values) > max_ids
                                                             else "")
    at = (f"at the training input scale {report.input_scale[0]}x{report.input_scale[1]} (long x short side)"
          if report.input_scale else "at the images' own size")
    lines = [f"data: {report.num_images} images in the annotation file, {report.num_used_images} used, "
             f"{sum(report.instances_per_class)} instances, {len(report.classes)} classes",
             f"images without instances: {len(report.images_without_instances)}"
             + (f" (ids {ids(report.images_without_instances)})" if report.images_without_instances else "")]
    if report.dropped:
        lines.append("annotations dropped (or, where it says so, only partly):")
        lines += [f"  {reason}: {len(v)} (ids {ids(v)})" for reason, v in report.dropped.items()]
    else:
        lines.append("annotations dropped: none")
    level_names = [f"L{i} {lo:g}-{hi:g}" for i, (lo, hi) in enumerate(report.scale_ranges)]
    width = max([len("class")] + [len(c) for c in report.classes])
    cols = [max(len(n), 6) for n in level_names]
    lines.append(f"instances per class and FPN level (box sqrt(w*h) in px {at}; ranges overlap):")
    lines.append("  " + "class".ljust(width) + " | " + "total".rjust(6) + " | "
                 + " | ".join(n.rjust(w) for n, w in zip(level_names, cols)))
    for c, name in enumerate(report.classes):
        row = report.class_level_counts[c] if report.class_level_counts is not None else []
        lines.append("  " + name.ljust(width) + " | " + str(report.instances_per_class[c]).rjust(6) + " | "
                     + " | ".join(str(int(v)).rjust(w) for v, w in zip(row, cols)))
    lines.append("  " + "all".ljust(width) + " | " + str(sum(report.instances_per_class)).rjust(6) + " | "
                 + " | ".join(str(v).rjust(w) for v, w in zip(report.instances_per_level, cols)))
    if len(report.sizes):
        q = np.percentile(report.sizes, [0, 50, 100])
        lines.append(f"instance sizes: min {q[0]:.0f}, median {q[1]:.0f}, max {q[2]:.0f} px; "
                     f"{report.outside_levels} outside every level")
    lines += [f"WARNING: {w}" for w in report.warnings]
    return "\n".join(lines)


def save_report_picture(report: DataReport, path: str) -> str:
    """``path`` (PNG): instances per class (bars) and the size histogram with each level's range marked."""
    import matplotlib
    matplotlib.use("Agg")  # no display; must not open windows in training
    import matplotlib.pyplot as plt
    fig, (ax_cls, ax_size) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [1, 1.4]})
    try:
        y = np.arange(len(report.classes))
        ax_cls.barh(y, report.instances_per_class, color=["tab:red" if n == 0 else "tab:blue"
                                                            for n in report.instances_per_class])
        ax_cls.set_yticks(y, report.classes)
        ax_cls.invert_yaxis()
        ax_cls.set_xlabel("instances")
        ax_cls.set_title(f"{sum(report.instances_per_class)} instances in {report.num_used_images} images")
        for yi, n in zip(y, report.instances_per_class):
            ax_cls.text(n, yi, f" {n}", va="center", fontsize=8)
        lo = min([r[0] for r in report.scale_ranges] + ([report.sizes.min()] if len(report.sizes) else []))
        hi = max([r[1] for r in report.scale_ranges] + ([report.sizes.max()] if len(report.sizes) else []))
        bins = np.geomspace(max(lo, 0.5), max(hi, 1.0) * 1.05, 40)
        if len(report.sizes):
            ax_size.hist(report.sizes, bins=bins, color="tab:gray", alpha=0.75, zorder=3)
        colors = plt.get_cmap("tab10")
        for level, ((a, b), n) in enumerate(zip(report.scale_ranges, report.instances_per_level)):
            ax_size.axvspan(a, b, ymin=level / len(report.scale_ranges), ymax=(level + 1) / len(report.scale_ranges),
                            color=colors(level), alpha=0.3, zorder=1)
            ax_size.text(np.sqrt(max(a, 0.5) * b), (level + 0.5) / len(report.scale_ranges),
                         f"L{level}: {n}", transform=ax_size.get_xaxis_transform(), ha="center", va="center",
                         fontsize=9, color="tab:red" if n == 0 else "black", zorder=4,
                         bbox=dict(facecolor="white", alpha=0.7, edgecolor="none"))
        ax_size.set_xscale("log")
        ax_size.set_xlabel("instance size sqrt(w*h) at the network input (px)")
        ax_size.set_ylabel("instances")
        ax_size.set_title("sizes and the FPN levels' scale ranges (instances per level)")
        fig.tight_layout()
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path


def log_data_report(dataset, scale_ranges: Sequence[tuple[float, float]], input_scale: tuple[int, int] | None,
                    work_dir: str | None, log: Callable[[str], None] = print) -> DataReport | None:
    """:func:`data_report` of ``dataset`` for a head with ``scale_ranges`` trained at ``input_scale`` (see
    :func:`training_scale`), logged line by line, and
    ``work_dir/data_report.png`` (when ``work_dir`` is given). For a data set without COCO-style ground
    truth it logs one line and returns None."""
    try:
        report = data_report(dataset, scale_ranges, input_scale)
    except ValueError as exc:
        log(str(exc))
        return None
    for line in format_report(report).splitlines():
        log(line)
    if work_dir:
        log(f"data report picture: {save_report_picture(report, os.path.join(work_dir, 'data_report.png'))}")
    return report


# ----------------------------------------------------------------------------- scale ranges that fit the data
def propose_scale_ranges(sizes, num_levels: int = 5, overlap: float = 2.0, min_ratio: float = 2 ** 0.5,
                         lowest: float = 1.0, highest: float = 2048.0) -> list[tuple[float, float]]:
    """``scale_ranges`` that spread instances of these sizes over ``num_levels`` FPN levels.

    The official ranges (``(1, 96), (48, 192), (96, 384), ...``) are levels split at boundaries 68, 136, 272, ...
    (a factor 2 apart, fixed for COCO), each range reaching ``sqrt(overlap)`` = 1.41x past its boundaries, so
    that neighbouring ranges overlap by the factor ``overlap`` = 2 and an instance near a boundary trains on
    both levels. Here the ``num_levels - 1`` boundaries are the quantiles ``1/L, 2/L, ...`` of the sizes
    instead (each level is the first choice of about as many instances; a boundary lies between two sorted
    sizes, at their geometric mean), moved apart where needed to at least
    ``min_ratio`` from one to the next (keeping their geometric centre), so that a level's instances stay
    larger than the finer level's and its coarser grid still fits them. The finest range starts at ``lowest``,
    the coarsest ends at ``highest`` (or at twice the largest size), as the official ones: every instance is on
    a level.

    Args:
        sizes: ``(N,)`` instance sizes ``sqrt(w * h)`` of the box in pixels at the network input
            (``DataReport.sizes``, what ``solov2 check-data`` measures); N >= 1.
    Returns: ``num_levels`` ``(lo, hi)`` ranges, whole pixels, lo increasing.
    """
    sizes = np.asarray(sizes, dtype=np.float64)
    sizes = sizes[np.isfinite(sizes) & (sizes > 0)]
    if len(sizes) == 0:
        raise ValueError("scale ranges: no instance sizes to fit them to (the training set has no instances)")
    if num_levels < 1:
        raise ValueError(f"scale ranges: num_levels must be >= 1, got {num_levels}")
    if num_levels == 1:
        return [(float(lowest), float(max(highest, 2 * sizes.max())))]
    ordered = np.sort(sizes)
    # boundary i: between the k-th and (k+1)-th smallest sizes, k = i N / L (their geometric mean)
    k = np.clip(np.round(np.arange(1, num_levels) * len(ordered) / num_levels).astype(int), 1, len(ordered) - 1) \
        if len(ordered) > 1 else np.zeros(num_levels - 1, dtype=int)
    logs = 0.5 * (np.log(ordered[np.maximum(k - 1, 0)]) + np.log(ordered[k]))
    spread = logs.copy()
    for i in range(1, len(spread)):  # at least min_ratio apart, then back to the quantiles' centre
        spread[i] = max(spread[i], spread[i - 1] + np.log(min_ratio))
    bounds = np.exp(spread + logs.mean() - spread.mean())
    reach = np.sqrt(overlap)
    lows = [lowest, *(bounds / reach)]
    highs = [*(bounds * reach), max(highest, 2 * sizes.max())]
    ranges = []
    for lo, hi in zip(lows, highs):
        lo = max(float(np.round(lo)), float(lowest))
        ranges.append((lo, max(float(np.round(hi)), lo + 1)))
    return ranges


def fit_scale_ranges(dataset, input_scale: tuple[int, int] | None, num_levels: int, **kwargs
                     ) -> tuple[list[tuple[float, float]], DataReport]:
    """:func:`propose_scale_ranges` for ``dataset``'s instances measured at ``input_scale`` (as
    :func:`data_report`, see :func:`training_scale`); returns the ranges and the report counted with them."""
    sizes = data_report(dataset, [], input_scale).sizes
    if len(sizes) == 0:
        raise ValueError(f"scale ranges: the training set ({type(dataset).__name__}) has no instances to fit "
                         f"model.bbox_head.scale_ranges='auto' to")
    ranges = propose_scale_ranges(sizes, num_levels, **kwargs)
    return ranges, data_report(dataset, ranges, input_scale)


def format_scale_ranges(ranges) -> str:
    """``[(1.0, 20.0), ...]`` -> ``"((1, 20), ...)"``, the spelling a config or ``--cfg-options`` takes."""
    return "(" + ", ".join(f"({lo:g}, {hi:g})" for lo, hi in ranges) + ")"

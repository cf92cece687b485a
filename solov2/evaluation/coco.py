"""COCO mask AP and box AP: convert model results to the COCO results format, then run COCOeval (``iouType``
"segm" and "bbox" on the same results: each box is its mask's).

The evaluator is ``faster-coco-eval`` (a C++ re-implementation of pycocotools' COCOeval with the same metrics,
3.5x faster on a val2017-sized result set, see docs/coco_scale.md). The environment variable
``SOLOV2_COCO_EVAL=pycocotools`` switches back to pycocotools' own COCOeval (``evaluate_coco(..., backend=...)``
does the same for one call).
"""
from __future__ import annotations

import contextlib
import io
import os
from typing import Callable, Sequence

import numpy as np
from pycocotools import mask as mask_utils

__all__ = ["results_to_coco", "rles_to_coco", "evaluate_coco", "METRIC_NAMES", "MASK_METRIC_NAMES",
           "BOX_METRIC_NAMES", "COCO_EVAL_BACKENDS", "coco_eval_backend"]

COCO_EVAL_BACKENDS = ("faster-coco-eval", "pycocotools")
BACKEND_ENV = "SOLOV2_COCO_EVAL"

# Keys of evaluate_coco's result, each in the order of COCOeval.stats[0:6]: mask AP (segm), then box AP (bbox).
MASK_METRIC_NAMES = ("mask_AP", "mask_AP50", "mask_AP75", "mask_AP_small", "mask_AP_medium", "mask_AP_large")
BOX_METRIC_NAMES = tuple(name.replace("mask_", "bbox_") for name in MASK_METRIC_NAMES)
METRIC_NAMES = MASK_METRIC_NAMES + BOX_METRIC_NAMES


def results_to_coco(result: dict, image_id: int, cat_ids: Sequence[int]) -> list[dict]:
    """One image's model output -> COCO result entries.

    Args:
        result: ``{"masks": (N, H, W) bool, "labels": (N,) int64, "scores": (N,) float}`` tensors (or arrays)
            at the image's original size.
        image_id: the COCO image id.
        cat_ids: category id of each label (``dataset.cat_ids``); a label without one raises ``ValueError``.

    Returns:
        ``[{"image_id", "category_id", "segmentation": RLE with str counts, "bbox": [x, y, w, h], "score"}]``.
    """
    masks = np.asarray(_numpy(result["masks"]), dtype=np.uint8)
    if masks.shape[0] == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0)))  # wants (H, W, N) Fortran order
    return rles_to_coco(rles, result["labels"], result["scores"], image_id, cat_ids)


def rles_to_coco(rles: list[dict], labels, scores, image_id: int, cat_ids: Sequence[int]) -> list[dict]:
    """Like :func:`results_to_coco` for masks already encoded as pycocotools RLEs (bytes counts)."""
    if len(rles) == 0:
        return []
    labels, scores = _numpy(labels).tolist(), _numpy(scores).tolist()
    beyond = sorted({label for label in labels if not 0 <= label < len(cat_ids)})
    if beyond:  # a model trained for other classes than the data's: say so rather than IndexError
        raise ValueError(f"image {image_id}: the model predicted label(s) {beyond[:10]} but the data set has "
                         f"{len(cat_ids)} categories (labels 0..{len(cat_ids) - 1}); the model's classes do not "
                         f"match the evaluation data")
    boxes = mask_utils.toBbox(rles).tolist()
    return [{"image_id": int(image_id), "category_id": int(cat_ids[label]),
             "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},  # JSON needs str
             "bbox": box, "score": float(score)}
            for rle, label, score, box in zip(rles, labels, scores, boxes)]


def coco_eval_backend(backend: str | None = None) -> str:
    """The COCOeval implementation to use: ``backend`` if given, else ``$SOLOV2_COCO_EVAL``, else
    ``"faster-coco-eval"``. An unknown name raises ``ValueError``."""
    name = backend or os.environ.get(BACKEND_ENV) or COCO_EVAL_BACKENDS[0]
    aliases = {"faster": "faster-coco-eval", "faster_coco_eval": "faster-coco-eval"}
    name = aliases.get(name, name)
    if name not in COCO_EVAL_BACKENDS:
        raise ValueError(f"COCO evaluator {name!r} (from {'the backend argument' if backend else BACKEND_ENV}) is "
                         f"unknown; expected one of {', '.join(COCO_EVAL_BACKENDS)}")
    return name


def evaluate_coco(coco_gt, coco_results: list[dict], log: Callable[[str], None] = print,
                  img_ids: Sequence[int] | None = None, backend: str | None = None) -> dict[str, float]:
    """Mask AP and box AP of ``coco_results`` against ``coco_gt`` (COCOeval, ``iouType`` "segm", then "bbox" on
    the same entries, whose ``bbox`` is their mask's), logged as a short table.

    Args:
        coco_gt: the ground truth: COCO instance content as a dict (``dataset.ground_truth()``) or a COCO
            object of either library (``dataset.coco``).
        coco_results: entries from :func:`results_to_coco` (not modified).
        log: where the table goes.
        img_ids: evaluate these images only (e.g. when only part of a data set was run); default: all.
        backend: ``"faster-coco-eval"`` or ``"pycocotools"``; default: see :func:`coco_eval_backend`.

    Returns:
        ``{name: value}`` for :data:`METRIC_NAMES` (``mask_AP``, ..., then ``bbox_AP``, ...), fractions in
        [0, 1]. No results gives all 0.0; an area range with no ground truth (COCOeval's -1) is also reported
        as 0.0. Ground-truth annotations without a ``bbox`` get their mask's.
    """
    backend = coco_eval_backend(backend)
    if not coco_results:
        log("mask AP, box AP: no detections, all metrics are 0")
        return {name: 0.0 for name in METRIC_NAMES}
    gt = coco_gt if isinstance(coco_gt, dict) else coco_gt.dataset
    known = {img["id"] for img in gt["images"]}
    stray = sorted({r["image_id"] for r in coco_results} - known)
    if stray:
        raise ValueError(f"evaluate_coco: results for image ids not in the ground truth: {stray[:10]}")
    _fill_gt_boxes(gt)
    results = [dict(r) for r in coco_results]  # loadRes adds keys (id, area) to each entry
    stats = {}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and its own 12-line table
        if backend == "pycocotools":
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval
            gt_api = coco_gt if isinstance(coco_gt, COCO) else _pycocotools_coco(gt)
            dt_api = gt_api.loadRes(results)
        else:
            from faster_coco_eval import COCO as FasterCOCO
            from faster_coco_eval import COCOeval_faster
            gt_api = FasterCOCO(gt, print_function=_quiet)
            dt_api = gt_api.loadRes(results)
        for iou_type in ("segm", "bbox"):
            if backend == "pycocotools":
                evaluator = COCOeval(gt_api, dt_api, iouType=iou_type)
            else:
                evaluator = COCOeval_faster(gt_api, dt_api, iouType=iou_type, print_function=_quiet)
            if img_ids is not None:
                evaluator.params.imgIds = sorted(int(i) for i in img_ids)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
            stats[iou_type] = [float(v) for v in evaluator.stats[: len(MASK_METRIC_NAMES)]]
    log(_table(stats["segm"], stats["bbox"]))
    return {name: max(v, 0.0) for name, v in zip(METRIC_NAMES, [*stats["segm"], *stats["bbox"]])}


def _quiet(*args, **kwargs) -> None:
    pass


def _pycocotools_coco(data: dict):
    from pycocotools.coco import COCO
    coco = COCO()
    coco.dataset = data
    coco.createIndex()
    return coco


def _fill_gt_boxes(gt: dict) -> None:
    """COCOeval's "bbox" reads each ground-truth annotation's ``bbox``; a file that leaves it out gets its mask's."""
    sizes = None
    for ann in gt.get("annotations") or []:
        if "bbox" not in ann and "segmentation" in ann:
            if sizes is None:
                sizes = {img["id"]: (img["height"], img["width"]) for img in gt["images"]}
            h, w = sizes[ann["image_id"]]
            segm = ann["segmentation"]
            if isinstance(segm, list):
                rle = mask_utils.merge(mask_utils.frPyObjects(segm, h, w))
            elif isinstance(segm["counts"], list):
                rle = mask_utils.frPyObjects(segm, h, w)
            else:
                rle = segm
            ann["bbox"] = mask_utils.toBbox(rle).tolist()


def _table(mask_stats, box_stats) -> str:
    header = ["AP", "AP50", "AP75", "APs", "APm", "APl"]
    rows = [[f"{100 * v:.1f}" if v >= 0 else "-" for v in stats]  # "-": no ground truth in that area range
            for stats in (mask_stats, box_stats)]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    return "\n".join([" ".join(["    ", "|", " | ".join(h.rjust(w) for h, w in zip(header, widths))]),
                      *(f"{name} | " + " | ".join(c.rjust(w) for c, w in zip(row, widths))
                        for name, row in zip(("mask", "bbox"), rows))])


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)

"""Official Cityscapes instance-level evaluation (AP over IoU 0.5:0.95, AP50) of SOLOv2 results.

``evaluate_cityscapes`` writes the predictions in the official results format, makes sure the ground-truth
``*_gtFine_instanceIds.png`` exist, and runs ``cityscapesscripts.evaluation.evalInstanceLevelSemanticLabeling``
as a library. Files under ``out_dir``::

    results/<city>/<city>_<seq>_<frame>_pred.txt      one "<mask png> <label id> <confidence>" line per instance
    results/<city>/<city>_<seq>_<frame>_<k>.png       binary mask of instance k (1-bit PNG, non-zero = instance)
    gtInstances.json                                  the official ground-truth cache (rebuilt if it does not
                                                      cover the evaluated images)
    resultInstanceLevelSemanticLabeling.json          the official result export (AP matrix, per-class averages)
    gt_cache/gtFine/<split>/<city>/*_instanceIds.png  only for instanceIds that were missing from the dataset and
                                                      could not be written there (read-only dataset)

Missing instanceIds images are drawn from the polygons by the official ``json2instanceImg.createInstanceImage``
and saved next to the polygons in the dataset root (where the official download has them), falling back to
``gt_cache`` when the dataset is not writable. A full Cityscapes download already ships them, so normally nothing
is generated.
"""
from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import warnings
from pathlib import Path
from typing import Callable

import cityscapesscripts.evaluation.evalInstanceLevelSemanticLabeling as cs_eval
import numpy as np
from cityscapesscripts.preparation.json2instanceImg import createInstanceImage
from PIL import Image

from solov2.data.cityscapes import IMAGE_SUFFIX, POLYGON_SUFFIX, load_annotation

INSTANCE_IDS_SUFFIX = "_gtFine_instanceIds.png"


def evaluate_cityscapes(dataset, results: list[dict], out_dir: str | Path,
                        log: Callable[[str], None] = print) -> dict:
    """Official Cityscapes instance segmentation metrics of ``results`` on ``dataset``.

    Args:
        dataset: a ``CityscapesDataset`` (uses ``root``, ``images`` and ``cat_ids``).
        results: one model result per dataset item, in dataset order: ``masks`` ``(N, H, W)`` bool at the
            original image size, ``labels`` ``(N,)`` int64 indices into ``dataset.CLASSES``, ``scores`` ``(N,)``.
            Tensors or numpy arrays; ``N = 0`` is fine.
        out_dir: folder for the result files and caches (see the module docstring).
        log: receives a short report.

    Returns:
        ``{"mask_AP", "mask_AP50", "per_class": {name: {"AP", "AP50"}}, "AP_<name>", "AP50_<name>"}`` as fractions
        in 0..1. A class without any ground-truth instance gets NaN (the official convention) and is left out of
        the means; with ground truth but no prediction its AP is 0.
    """
    if len(results) != len(dataset):
        raise ValueError(f"evaluate_cityscapes: {len(results)} results for {len(dataset)} dataset images")
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    gt_files = ensure_instance_ids(dataset, out_dir / "gt_cache", log)
    pred_dir = out_dir / "results"
    pred_files = write_predictions(dataset, results, gt_files, pred_dir)
    official = run_official_evaluation(pred_files, gt_files, pred_dir, out_dir)
    metrics = summarize(official)
    log_metrics(metrics, len(dataset), log)
    return metrics


def instance_ids_name(ann_file: str) -> str:
    """``gtFine/<split>/<city>/<name>_gtFine_polygons.json`` -> ``.../<name>_gtFine_instanceIds.png``."""
    return ann_file[: -len(POLYGON_SUFFIX)] + INSTANCE_IDS_SUFFIX


def ensure_instance_ids(dataset, cache_root: Path, log: Callable[[str], None] = print) -> list[Path]:
    """Path of every dataset image's ``*_gtFine_instanceIds.png``, generating the missing ones.

    Looked up in the dataset root, then under ``cache_root``; a missing one is written into the dataset root,
    or under ``cache_root`` (same relative path) if that fails.
    """
    root = Path(dataset.root)
    paths, generated = [], []
    for info in dataset.images:
        if info.ann_file is None:
            raise ValueError(f"{root / info.file_name}: no ground truth (Cityscapes test labels are withheld)")
        rel = instance_ids_name(info.ann_file)
        path = next((p for p in (root / rel, cache_root / rel) if p.is_file()), None)
        if path is None:
            try:
                path = _write_instance_ids(root / info.ann_file, root / rel)
            except OSError as e:
                if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):  # only a read-only dataset falls back
                    raise
                path = _write_instance_ids(root / info.ann_file, cache_root / rel)
            generated.append(path)
        paths.append(path)
    if generated:
        where = sorted({str(p.parents[3]) for p in generated})  # the folder holding gtFine/
        log(f"generated {len(generated)} missing *{INSTANCE_IDS_SUFFIX} under {', '.join(where)}")
    return paths


def _write_instance_ids(polygon_file: Path, out_file: Path) -> Path:
    """Draw the instanceIds image with the official ``createInstanceImage`` and save it as 16-bit PNG.

    Saving is ours: the official ``json2instanceImg`` saves PIL mode "I", which Pillow 13 no longer writes as
    PNG; ids are at most 33999, so uint16 holds them. A temporary name keeps half-written files out of sight.
    """
    try:
        ids = np.asarray(createInstanceImage(load_annotation(polygon_file), "ids"))
    except SystemExit as e:  # the official code exits on an unknown label after printing it
        raise ValueError(f"{polygon_file}: createInstanceImage failed (see the message above)") from e
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(f".{out_file.stem}.{os.getpid()}.png")
    Image.fromarray(ids.astype(np.uint16)).save(tmp)
    os.replace(tmp, out_file)
    return out_file


def write_predictions(dataset, results: list[dict], gt_files: list[Path], pred_dir: Path) -> list[Path]:
    """Write the official results format under ``pred_dir`` (emptied first); returns one txt per image."""
    if pred_dir.exists():
        shutil.rmtree(pred_dir)  # masks of an earlier run must not linger next to the new ones
    txt_files = []
    for info, result, gt_file in zip(dataset.images, results, gt_files):
        name = Path(info.file_name).name[: -len(IMAGE_SUFFIX)]
        city_dir = pred_dir / Path(info.file_name).parent.name
        city_dir.mkdir(parents=True, exist_ok=True)
        masks, labels, scores = (_numpy(result[key]) for key in ("masks", "labels", "scores"))
        with Image.open(gt_file) as gt:
            size = (gt.height, gt.width)
        if masks.shape[0] and masks.shape[1:] != size:
            raise ValueError(f"result for {info.file_name}: masks {masks.shape[1:]} are not the image size {size}")
        lines = []
        for k, (mask, label, score) in enumerate(zip(masks.astype(bool), labels.tolist(), scores.tolist())):
            Image.fromarray(mask).save(city_dir / f"{name}_{k}.png")  # bool array -> 1-bit PNG
            lines.append(f"{name}_{k}.png {dataset.cat_ids[label]} {score:.6f}\n")
        txt = city_dir / f"{name}_pred.txt"
        txt.write_text("".join(lines))
        txt_files.append(txt)
    return txt_files


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def run_official_evaluation(pred_files: list[Path], gt_files: list[Path], pred_dir: Path, out_dir: Path) -> dict:
    """The official evaluation on explicit (prediction txt, instanceIds png) pairs; returns its result dict.

    ``pred_dir`` must contain every predicted mask; the caches and the result export go to ``out_dir``.

    Calls the steps of ``cs_eval.evaluateImgLists`` one by one because that function also writes a large
    ``matches.json`` into the current working directory. Settings start from the module's defaults (a copy; the
    module's own ``args`` is left alone).
    """
    args = _official_args(pred_dir, gt_files, out_dir)
    pred_list, gt_list = [str(p) for p in pred_files], [str(p) for p in gt_files]
    _drop_stale_gt_cache(Path(args.gtInstancesFile), gt_list)
    try:
        with _numpy_in1d(), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # nanmean over classes without ground truth
            cs_eval.setInstanceLabels(args)
            gt_instances = cs_eval.getGtInstances(gt_list, args)
            matches = cs_eval.matchGtWithPreds(pred_list, gt_list, gt_instances, args)
            aps = cs_eval.evaluateMatches(matches, args)
            result = cs_eval.prepareJSONDataForResults(cs_eval.computeAverages(aps, args), aps, args)
    except SystemExit as e:  # the official printError() prints the reason, then exits
        raise ValueError("Cityscapes evaluation failed (see the message above)") from e
    cs_eval.writeDict2JSON(result, args.exportFile)
    return result


def _official_args(pred_dir: Path, gt_files: list[Path], out_dir: Path):
    args = cs_eval.CArgs()
    args.__dict__.update(vars(cs_eval.args))
    args.predictionPath = os.path.abspath(pred_dir)  # every mask must lie under it (checked by readPredInfo)
    args.predictionWalk = None
    # Unused, as the image lists are passed explicitly; kept pointing at the evaluated folder for the record.
    args.groundTruthSearch = str(gt_files[0].parents[1] / "*" / f"*{INSTANCE_IDS_SUFFIX}") if gt_files else ""
    args.gtInstancesFile = str(out_dir / "gtInstances.json")
    args.exportFile = str(out_dir / "resultInstanceLevelSemanticLabeling.json")
    args.JSONOutput = True
    args.quiet = True
    args.csv = False
    args.colorized = False
    args.distanceAvailable = False
    return args


def _drop_stale_gt_cache(cache: Path, gt_list: list[str]) -> None:
    """The official code trusts gtInstances.json blindly; remove it unless it covers every evaluated image."""
    if not cache.is_file():
        return
    try:
        keys = set(json.loads(cache.read_text()))
    except ValueError:
        keys = set()
    if not {os.path.abspath(p) for p in gt_list} <= keys:
        cache.unlink()


class _NumpyWithIn1d:
    """numpy as seen by the official matcher: numpy 2.4 removed ``np.in1d``, which cityscapesScripts calls."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def in1d(a, b):
        return np.isin(np.ravel(a), b)


@contextlib.contextmanager
def _numpy_in1d():
    if hasattr(np, "in1d"):
        yield
        return
    saved, cs_eval.np = cs_eval.np, _NumpyWithIn1d()
    try:
        yield
    finally:
        cs_eval.np = saved


def summarize(official: dict) -> dict:
    """Official result dict -> our metrics (see ``evaluate_cityscapes``)."""
    averages = official["averages"]
    metrics = {"mask_AP": float(averages["allAp"]), "mask_AP50": float(averages["allAp50%"]), "per_class": {}}
    for name in official["instLabels"]:
        per_class = averages["classes"][name]
        metrics["per_class"][name] = {"AP": float(per_class["ap"]), "AP50": float(per_class["ap50%"])}
    for name, values in metrics["per_class"].items():
        metrics[f"AP_{name}"] = values["AP"]
        metrics[f"AP50_{name}"] = values["AP50"]
    return metrics


def log_metrics(metrics: dict, num_images: int, log: Callable[[str], None]) -> None:
    def fmt(v: float) -> str:
        return "  n/a" if math.isnan(v) else f"{v:.3f}"

    log(f"Cityscapes instance segmentation, {num_images} images: "
        f"AP {fmt(metrics['mask_AP'])}  AP50 {fmt(metrics['mask_AP50'])}")
    for name, values in metrics["per_class"].items():
        log(f"  {name:<12} AP {fmt(values['AP'])}  AP50 {fmt(values['AP50'])}")

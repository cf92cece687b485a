"""Instance segmentation data sets in COCO format (``instances_*.json``-style files).

Segmentations may be polygons, uncompressed RLE or compressed RLE. Crowd regions (``iscrowd=1``) stay in
:attr:`CocoDataset.coco` for evaluation but are not training targets. Annotations that cannot be used
(broken polygons, zero area, unknown category or image) are dropped once at load time, with one warning,
and listed in :attr:`CocoDataset.problems`. Image ids may be strings (renumbered internally, see
:attr:`CocoDataset.original_ids`).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from collections import defaultdict

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch import Tensor

from solov2.data.bad_images import first_usable
from solov2.data.image import read_image
from solov2.data.transforms import hflip
from solov2.errors import DataError, one_line

__all__ = ["CocoDataset", "load_coco_json", "coco_from_data", "decode_segmentations", "read_image"]


class CocoDataset(torch.utils.data.Dataset):
    """A COCO-format instance segmentation data set.

    ``dataset[i]`` is ``(image, target)``: ``image`` ``(3, H, W)`` uint8 RGB at the file's own resolution;
    ``target`` has ``masks`` ``(N, H, W)`` bool, ``labels`` ``(N,)`` int64 in ``[0, len(CLASSES))``,
    ``image_id`` int, ``file_name`` str and ``orig_size`` ``(H, W)``. Crowd regions are left out.

    Args:
        ann_file: the COCO JSON file.
        img_prefix: the folder that the images' ``file_name`` is relative to.
        flip_prob: probability of a random horizontal flip (training).
        filter_empty_gt: keep only images with at least one non-crowd instance. For training sets only:
            evaluation must see every image.
        skip_bad_images: on an unreadable image, warn once and return the next readable one instead of
            raising :class:`DataError`.

    Attributes:
        CLASSES: category names, in label order.
        cat_ids: category id of each label (labels are the sorted category ids, renumbered 0..C-1).
        coco: the ``pycocotools`` ground truth (without the dropped annotations), for evaluation.
        img_ids: the (int) image ids in data set order.
        problems: ``{reason: [annotation ids]}`` of the annotations dropped (or partly dropped) at load time.
        original_ids: ``{int image id: the file's image id}`` when the file's ids are not all ints (e.g.
            ``"img_001"``; they are renumbered 1..N in file order), else empty. See :meth:`original_image_id`.
    """

    def __init__(self, ann_file: str, img_prefix: str, flip_prob: float = 0.0, filter_empty_gt: bool = True,
                 skip_bad_images: bool = False):
        if not os.path.isfile(ann_file):
            raise FileNotFoundError(f"{ann_file}: annotation file not found")
        if not os.path.isdir(img_prefix):
            raise FileNotFoundError(f"{img_prefix}: image folder not found")
        self.ann_file, self.img_prefix = ann_file, img_prefix
        self.flip_prob, self.skip_bad_images = flip_prob, skip_bad_images
        self.coco, self.problems, self.original_ids = coco_from_data(_read_json(ann_file), ann_file)
        self.cat_ids = sorted(self.coco.cats)
        self.CLASSES = tuple(str(self.coco.cats[c].get("name", c)) for c in self.cat_ids)
        self.cat2label = {c: i for i, c in enumerate(self.cat_ids)}
        self.img_ids = sorted(self.coco.imgs)
        if filter_empty_gt:
            self.img_ids = [i for i in self.img_ids if any(not a.get("iscrowd", 0) for a in self.coco.imgToAnns[i])]
        self._bad: set[int] = set()  # indices already found unreadable (skip_bad_images)

    def __len__(self) -> int:
        return len(self.img_ids)

    def original_image_id(self, img_id: int):
        """The annotation file's own id of image ``img_id`` (for results written for the user)."""
        return self.original_ids.get(img_id, img_id)

    def __getitem__(self, index: int) -> tuple[Tensor, dict]:
        if not self.skip_bad_images:
            return self.load(index)
        return first_usable(index, len(self), self._bad, self.load,
                            f"{self.img_prefix}: no readable image among the {len(self)} of {self.ann_file}")[1]

    def load(self, index: int) -> tuple[Tensor, dict]:
        """Item ``index`` with no skipping; raises :class:`DataError` for an unreadable image."""
        img_id = self.img_ids[index]
        info = self.coco.imgs[img_id]
        path = os.path.join(self.img_prefix, info["file_name"])
        image = read_image(path)
        h, w = image.shape[-2:]
        if (h, w) != (info["height"], info["width"]):
            raise DataError(size_mismatch(path, (h, w), (info["height"], info["width"]), self.ann_file))
        anns = [a for a in self.coco.imgToAnns[img_id] if not a.get("iscrowd", 0)]
        masks = decode_segmentations([a["segmentation"] for a in anns], h, w)
        labels = torch.tensor([self.cat2label[a["category_id"]] for a in anns], dtype=torch.int64)
        keep = masks.flatten(1).any(1)  # a sliver polygon can rasterize to no pixel at all
        masks, labels = masks[keep], labels[keep]
        if self.flip_prob > 0 and torch.rand(()).item() < self.flip_prob:
            image, masks = hflip(image, masks)
        return image, {"masks": masks, "labels": labels, "image_id": int(img_id), "file_name": info["file_name"],
                       "orig_size": (int(h), int(w))}


def size_mismatch(path: str, got: tuple[int, int], want: tuple[int, int], ann_file: str) -> str:
    """The one-line error for an image whose (upright) size ``got`` (H, W) is not the ``want`` of ``ann_file``."""
    msg = (f"{path}: image is {got[1]} x {got[0]} (width x height) but {ann_file} says {want[1]} x {want[0]}")
    if tuple(got) == tuple(want)[::-1]:
        msg += ("; the image is read upright, with its EXIF orientation applied: were the annotations made on "
                "the unrotated image?")
    return msg


def decode_segmentations(segms: list, height: int, width: int) -> Tensor:
    """COCO segmentations (polygon lists, uncompressed or compressed RLE dicts) -> ``(N, H, W)`` bool."""
    rles = []
    for segm in segms:
        if isinstance(segm, list):
            rles.append(mask_utils.merge(mask_utils.frPyObjects(segm, height, width)))
        elif isinstance(segm["counts"], list):
            rles.append(mask_utils.frPyObjects(segm, height, width))
        else:
            rles.append(segm)
    if not rles:
        return torch.zeros((0, height, width), dtype=torch.bool)
    with warnings.catch_warnings():
        # pycocotools' decoder trips a numpy 2 DeprecationWarning that says nothing about the data
        warnings.filterwarnings("ignore", message="__array__ implementation", category=DeprecationWarning)
        masks = mask_utils.decode(rles)  # (H, W, N) uint8, Fortran order
    return torch.from_numpy(np.ascontiguousarray(masks.transpose(2, 0, 1), dtype=bool))


def load_coco_json(ann_file: str) -> COCO:
    """Read a COCO JSON into a ``pycocotools`` ``COCO``, dropping unusable annotations with one warning.

    Invalid JSON or a missing ``images``/``categories`` list raises :class:`DataError` naming the file.
    """
    return coco_from_data(_read_json(ann_file), ann_file)[0]


def _read_json(ann_file: str):
    try:
        with open(ann_file, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{ann_file}: invalid JSON ({one_line(exc)})") from None


def coco_from_data(data, ann_file: str) -> tuple[COCO, dict[str, list], dict[int, object]]:
    """:func:`load_coco_json` of already parsed JSON content (modified in place).

    Returns ``(coco, problems, original_ids)``: ``problems`` maps each reason an annotation was dropped (or
    partly dropped) to the annotation ids concerned; ``original_ids`` maps the int image ids used internally
    to the file's own ids where those are not all ints (e.g. ``"img_001"``: pycocotools, COCOeval and the
    targets' ``image_id`` want ints), and is empty otherwise.
    """
    _check_structure(data, ann_file)
    original_ids = _int_image_ids(data)
    images, cat_ids = _check_structure(data, ann_file)
    data["annotations"], problems = _clean_annotations(data.get("annotations") or [], images, cat_ids)
    if problems:
        _warn_problems(ann_file, problems, len(data["annotations"]))
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        coco.createIndex()
    return coco, problems, original_ids


def _int_image_ids(data: dict) -> dict[int, object]:
    """Renumber the images 1..N (file order) if any image id is not an int; annotations follow.

    Returns ``{new id: the file's id}``, empty when the ids are already ints (then nothing changes).
    """
    ids = [img["id"] for img in data["images"]]
    if all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        return {}
    new_of: dict = {}
    for new, img in enumerate(data["images"], start=1):
        new_of.setdefault(_hashable(img["id"]), new)
        img["id"] = new_of[_hashable(img["id"])]
    for ann in data.get("annotations") or []:
        if isinstance(ann, dict) and _hashable(ann.get("image_id")) in new_of:
            ann["image_id"] = new_of[_hashable(ann["image_id"])]
        elif isinstance(ann, dict):
            ann["image_id"] = None  # reported as "unknown image id", never confused with a renumbered id
    return {new: orig for orig, new in new_of.items()}


def _hashable(value):
    return value if not isinstance(value, (list, dict)) else json.dumps(value)


def _check_structure(data, ann_file: str) -> tuple[dict[int, dict], set]:
    if not isinstance(data, dict):
        raise DataError(f"{ann_file}: expected a JSON object with 'images', 'annotations' and 'categories'")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{ann_file}: missing or invalid '{key}' list")
    for i, img in enumerate(data["images"]):
        missing = [k for k in ("id", "file_name", "height", "width") if k not in img]
        if missing:
            raise DataError(f"{ann_file}: images[{i}] lacks {missing}")
    for i, cat in enumerate(data["categories"]):
        if "id" not in cat:
            raise DataError(f"{ann_file}: categories[{i}] lacks 'id'")
    return {img["id"]: img for img in data["images"]}, {cat["id"] for cat in data["categories"]}


def _clean_annotations(anns: list, images: dict[int, dict], cat_ids: set) -> tuple[list, dict[str, list]]:
    """Keep the usable annotations; ``problems`` maps a reason to the ids it concerns."""
    problems: dict[str, list] = defaultdict(list)
    next_id = 1 + max((a["id"] for a in anns if isinstance(a.get("id"), int)), default=0)
    kept = []
    for ann in anns:
        if "id" not in ann:  # pycocotools indexes by id
            ann["id"], next_id = next_id, next_id + 1
        image = images.get(ann.get("image_id"))
        if image is None:
            problems["unknown image id"].append(ann["id"])
            continue
        if ann.get("category_id") not in cat_ids:
            problems["unknown category id"].append(ann["id"])
            continue
        segm, area, reason = _clean_segmentation(ann.get("segmentation"), image["height"], image["width"])
        if reason:
            problems[reason].append(ann["id"])
            if segm is None:
                continue
        ann["segmentation"] = segm
        ann.setdefault("area", area)  # COCOeval needs area and iscrowd on every ground-truth annotation
        ann.setdefault("iscrowd", 0)
        kept.append(ann)
    return kept, dict(problems)


def _clean_segmentation(segm, height: int, width: int) -> tuple[object, float, str | None]:
    """-> (segmentation or None if unusable, area, problem or None)."""
    if isinstance(segm, list):
        return _clean_polygons(segm)
    if isinstance(segm, dict) and "counts" in segm and "size" in segm:
        if list(segm["size"]) != [height, width]:
            return None, 0.0, "RLE size differs from the image size"
        counts = segm["counts"]
        if isinstance(counts, list):
            if sum(counts) != height * width:
                return None, 0.0, "invalid RLE"
            area = float(sum(counts[1::2]))
        else:
            area = float(mask_utils.area(segm))
        return (segm, area, None) if area > 0 else (None, 0.0, "zero-area mask")
    return None, 0.0, "missing or invalid segmentation"


def _clean_polygons(polys: list) -> tuple[list | None, float, str | None]:
    valid, area = [], 0.0
    for poly in polys:
        try:
            xy = np.asarray(poly, dtype=np.float64)
        except (TypeError, ValueError):
            continue
        # pycocotools needs x, y pairs and at least 3 points
        if xy.ndim != 1 or len(xy) % 2 or len(xy) < 6:
            continue
        x, y = xy[0::2], xy[1::2]
        part = 0.5 * abs(float(x[:-1] @ y[1:] - y[:-1] @ x[1:] + x[-1] * y[0] - y[-1] * x[0]))  # shoelace
        if not np.isfinite(part):
            continue
        valid.append(poly)
        area += part
    if not valid:
        return None, 0.0, "broken polygon"
    if area <= 0:
        return None, 0.0, "zero-area mask"
    # A broken part of a multi-part polygon is dropped on its own; the instance keeps its valid parts.
    return valid, area, ("broken polygon part (instance kept)" if len(valid) < len(polys) else None)


def _warn_problems(ann_file: str, problems: dict[str, list], num_kept: int) -> None:
    ids = [i for group in problems.values() for i in group]
    reasons = ", ".join(f"{len(v)} {k}" for k, v in problems.items())
    shown = ", ".join(str(i) for i in ids[:10]) + (", ..." if len(ids) > 10 else "")
    warnings.warn(f"{ann_file}: {len(ids)} problem annotation(s) ({reasons}); unusable ones dropped, "
                  f"{num_kept} kept; annotation ids: {shown}", stacklevel=3)

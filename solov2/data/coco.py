"""Instance segmentation data sets in COCO format (``instances_*.json``-style files).

Segmentations may be polygons, uncompressed RLE or compressed RLE. Crowd regions (``iscrowd=1``) stay in
the ground truth for evaluation (:meth:`CocoDataset.ground_truth`) but are not training targets. Annotations
that cannot be used (broken polygons, zero area, unknown category or image) are dropped once at load time,
with one warning, and listed in :attr:`CocoDataset.problems`. Image ids may be strings (renumbered internally, see
:attr:`CocoDataset.original_ids`).
"""
from __future__ import annotations

import contextlib
import io
import os
import warnings

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch import Tensor

from solov2.data.bad_images import first_usable
from solov2.data.coco_records import CocoRecords
from solov2.data.image import read_image
from solov2.data.transforms import hflip
from solov2.errors import DataError

__all__ = ["CocoDataset", "load_coco_json", "coco_from_dict", "decode_segmentations", "read_image"]


class CocoDataset(torch.utils.data.Dataset):
    """A COCO-format instance segmentation data set.

    ``dataset[i]`` is ``(image, target)``: ``image`` ``(3, H, W)`` uint8 RGB at the file's own resolution;
    ``target`` has ``masks`` ``(N, H, W)`` bool, ``labels`` ``(N,)`` int64 in ``[0, len(CLASSES))``,
    ``image_id`` int, ``file_name`` str and ``orig_size`` ``(H, W)``. Crowd regions are left out.

    The annotations are kept as :class:`~solov2.data.coco_records.CocoRecords` (numpy arrays, no per-annotation
    Python object), so forked DataLoader workers share them instead of each copying them.

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
        img_ids: the (int) image ids in data set order (a list; may be assigned).
        records: the cleaned annotations (:class:`~solov2.data.coco_records.CocoRecords`).
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
        self.records = CocoRecords.from_file(ann_file)
        self.problems = self.records.problems
        cats = {c["id"]: c for c in self.records.categories}
        self.cat_ids = sorted(cats)
        self.CLASSES = tuple(str(cats[c].get("name", c)) for c in self.cat_ids)
        self.cat2label = {c: i for i, c in enumerate(self.cat_ids)}
        rows = self.records.by_id  # image rows in image id order
        if filter_empty_gt:
            r = self.records
            owner = np.repeat(np.arange(len(r)), np.diff(r.ann_start))
            has_instance = np.bincount(owner[r.ann_iscrowd == 0], minlength=len(r)) > 0
            rows = rows[has_instance[rows]]
        self._rows = np.ascontiguousarray(rows, dtype=np.int64)
        self._bad: set[int] = set()  # indices already found unreadable (skip_bad_images)

    @property
    def img_ids(self) -> list[int]:
        return self.records.image_ids[self._rows].tolist()

    @img_ids.setter
    def img_ids(self, ids) -> None:
        self._rows = self.records.rows_of(list(ids))

    @property
    def original_ids(self) -> dict[int, object]:
        r = self.records
        return {} if r.original_ids is None else {int(i): r.original_ids[k] for k, i in enumerate(r.image_ids)}

    def __len__(self) -> int:
        return len(self._rows)

    def original_image_id(self, img_id: int):
        """The annotation file's own id of image ``img_id`` (for results written for the user)."""
        if self.records.original_ids is None:
            return img_id
        return self.records.original_id(int(self.records.rows_of([img_id])[0]))

    def ground_truth(self) -> dict:
        """The ground truth for evaluation: COCO instance content (``images``, ``annotations``, ``categories``)
        of every image of the file, without the dropped annotations, with int image ids. Built anew per call."""
        return self.records.to_coco_dict()

    @property
    def coco(self) -> COCO:
        """:meth:`ground_truth` as a ``pycocotools`` ``COCO``, built anew on each access (not kept: see
        :mod:`solov2.data.records`)."""
        return coco_from_dict(self.ground_truth())

    def __getitem__(self, index: int) -> tuple[Tensor, dict]:
        if not self.skip_bad_images:
            return self.load(index)
        return first_usable(index, len(self), self._bad, self.load,
                            f"{self.img_prefix}: no readable image among the {len(self)} of {self.ann_file}")[1]

    def load(self, index: int) -> tuple[Tensor, dict]:
        """Item ``index`` with no skipping; raises :class:`DataError` for an unreadable image."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        row = int(self._rows[index])
        info = self.records.image(row)
        path = os.path.join(self.img_prefix, info["file_name"])
        image = read_image(path)
        h, w = image.shape[-2:]
        if (h, w) != (info["height"], info["width"]):
            raise DataError(size_mismatch(path, (h, w), (info["height"], info["width"]), self.ann_file))
        anns = [a for a in self.records.annotations(row) if not a["iscrowd"]]
        masks = decode_segmentations([a["segmentation"] for a in anns], h, w)
        labels = torch.tensor([self.cat2label[a["category_id"]] for a in anns], dtype=torch.int64)
        keep = masks.flatten(1).any(1)  # a sliver polygon can rasterize to no pixel at all
        masks, labels = masks[keep], labels[keep]
        if self.flip_prob > 0 and torch.rand(()).item() < self.flip_prob:
            image, masks = hflip(image, masks)
        return image, {"masks": masks, "labels": labels, "image_id": info["id"], "file_name": info["file_name"],
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
    return coco_from_dict(CocoRecords.from_file(ann_file).to_coco_dict())


def coco_from_dict(dataset: dict) -> COCO:
    """A pycocotools ``COCO`` of in-memory instance content (without its "creating index" chatter)."""
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        coco.createIndex()
    return coco

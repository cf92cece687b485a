"""Cityscapes instance segmentation, read straight from the official folder layout.

Expected layout under ``root`` (as unpacked from ``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip``)::

    leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_polygons.json

Instances are the 8 Cityscapes "thing" classes that are evaluated (``hasInstances and not ignoreInEval`` in
``cityscapesscripts.helpers.labels``). Masks are rasterized from the polygons exactly as the official
``cityscapesscripts/preparation/json2instanceImg.py`` builds ``*_gtFine_instanceIds.png``: the same PIL polygon
call, in file order, so an object drawn later hides what it covers, whether it is an instance, a group
(``cargroup``) or stuff (``road``). The visible masks therefore never overlap, and an instance hidden entirely is
dropped.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from cityscapesscripts.helpers.annotation import Annotation
from cityscapesscripts.helpers.labels import Label, name2label
from cityscapesscripts.helpers.labels import labels as CS_LABELS
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch import Tensor
from torch.utils.data import Dataset

from solov2.data.bad_images import first_usable
from solov2.data.coco import coco_from_dict, read_image
from solov2.data.records import SerializedList
from solov2.data.transforms import hflip
from solov2.errors import DataError

__all__ = ["CityscapesDataset", "cityscapes_to_coco", "CLASSES", "CAT_IDS", "rasterize_instances",
           "load_annotation", "scan_split"]

# The evaluated thing classes, in label-table order (which is the official order).
CLASSES = tuple(label.name for label in CS_LABELS if label.hasInstances and not label.ignoreInEval)
assert CLASSES == ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"), CLASSES
CLASS_INDEX = {name: i for i, name in enumerate(CLASSES)}
CAT_IDS = tuple(name2label[name].id for name in CLASSES)  # label -> Cityscapes label id: person 24 ... bicycle 33

SPLITS = ("train", "val", "test")
IMAGE_SUFFIX = "_leftImg8bit.png"
POLYGON_SUFFIX = "_gtFine_polygons.json"


@dataclass(frozen=True)
class CityscapesImage:
    """One image of a split. Paths are POSIX strings relative to the dataset root."""

    image_id: int  # 1-based position in the sorted listing of the whole split (stable under filtering)
    file_name: str  # leftImg8bit/<split>/<city>/<name>_leftImg8bit.png
    ann_file: str | None  # gtFine/<split>/<city>/<name>_gtFine_polygons.json; None for unannotated test images
    num_polygons: int  # thing-instance polygons in the JSON, before occlusion


def resolve_label(name: str) -> tuple[Label | None, bool]:
    """Label-table entry of an object name, and whether it is a group.

    Same rule as json2instanceImg: an unknown name ending in ``group`` (``cargroup``) is that class as a group.
    Returns ``(None, is_group)`` for names the table does not know.
    """
    is_group = False
    if name not in name2label and name.endswith("group"):
        name, is_group = name[: -len("group")], True
    return name2label.get(name), is_group


def instance_class(name: str) -> int | None:
    """Index into ``CLASSES`` if an object with this name is a thing instance, else None."""
    label, is_group = resolve_label(name)
    if label is None or is_group:
        return None
    return CLASS_INDEX.get(label.name)


def load_annotation(path: str | Path) -> Annotation:
    """Parse one ``*_gtFine_polygons.json`` with the official reader; any failure is a one-line DataError."""
    annotation = Annotation()
    try:
        annotation.fromJsonText(Path(path).read_text())
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        raise DataError(f"{path}: cannot parse Cityscapes polygon JSON ({type(e).__name__}: {e})") from e
    return annotation


def rasterize_instances(annotation: Annotation) -> tuple[np.ndarray, np.ndarray]:
    """Visible masks of the thing instances in one annotation.

    Every object json2instanceImg draws is drawn here too, with the same ``ImageDraw.polygon`` call on a
    mode "I" canvas in the same order, so pixel ownership is identical to the official ``instanceIds`` image.
    Only the fill differs: instance k gets code k + 1, every other object (stuff, groups, caravans...) code 0.
    Deleted objects and ``license plate`` (id -1) are not drawn, as in the official script; names missing from
    the label table (the official script aborts on them) are skipped.

    Returns:
        masks: ``(N, H, W)`` bool, pairwise disjoint, instances with no visible pixel removed.
        labels: ``(N,)`` int64 indices into ``CLASSES``, in file order.
    """
    canvas = Image.new("I", (annotation.imgWidth, annotation.imgHeight), 0)
    draw = ImageDraw.Draw(canvas)
    classes = []
    for obj in annotation.objects:
        label, is_group = resolve_label(obj.label)
        if obj.deleted or label is None or label.id < 0:
            continue
        cls = None if is_group else CLASS_INDEX.get(label.name)
        if cls is not None:
            classes.append(cls)
        draw.polygon(obj.polygon, fill=len(classes) if cls is not None else 0)
    codes = np.asarray(canvas)
    area = np.bincount(codes.ravel(), minlength=len(classes) + 1)
    keep = np.array([k for k in range(1, len(classes) + 1) if area[k] > 0], dtype=np.int64)
    masks = codes[None] == keep[:, None, None]
    return masks, np.array(classes, dtype=np.int64)[keep - 1]


def _count_polygons(path: Path) -> int:
    """Number of thing-instance polygons in a JSON, from a plain ``json`` parse (half the cost of Annotation)."""
    try:
        objects = json.loads(path.read_text())["objects"]
        return sum(1 for obj in objects if not obj.get("deleted", 0) and instance_class(str(obj["label"])) is not None)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise DataError(f"{path}: cannot parse Cityscapes polygon JSON ({type(e).__name__}: {e})") from e


def scan_split(root: str | Path, split: str) -> list[CityscapesImage]:
    """List the images of a split and check that each has its polygon JSON.

    ``gtFine/test`` may be absent (test labels are withheld); test images then have ``ann_file=None``.
    Raises DataError naming what is missing, relative to ``root``.
    """
    if split not in SPLITS:
        raise DataError(f"unknown Cityscapes split {split!r}; expected one of {', '.join(SPLITS)}")
    root = Path(root)
    image_dir, ann_dir = root / "leftImg8bit" / split, root / "gtFine" / split
    if not image_dir.is_dir():
        hint = "" if root.is_dir() else f" (the directory {root} does not exist)"
        raise DataError(f"{root}: missing leftImg8bit/{split}{hint}")
    if split != "test" and not ann_dir.is_dir():
        raise DataError(f"{root}: missing gtFine/{split}")
    paths = sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}"))
    if not paths:
        raise DataError(f"{root}: no <city>/*{IMAGE_SUFFIX} images under leftImg8bit/{split}")
    images = []
    for image_id, path in enumerate(paths, start=1):
        ann_file = f"gtFine/{split}/{path.parent.name}/{path.name[: -len(IMAGE_SUFFIX)]}{POLYGON_SUFFIX}"
        if not (root / ann_file).is_file():
            if split != "test":
                raise DataError(f"{root}: missing {ann_file}")
            ann_file = None
        num_polygons = _count_polygons(root / ann_file) if ann_file else 0
        images.append(CityscapesImage(image_id, path.relative_to(root).as_posix(), ann_file, num_polygons))
    return images


class CityscapesDataset(Dataset):
    """Cityscapes fine instance annotations as ``(image, target)`` pairs, like the COCO dataset.

    Args:
        root: dataset root holding ``leftImg8bit/`` and ``gtFine/``.
        split: "train", "val" or "test".
        flip_prob: probability of a random horizontal flip (image and masks together).
        filter_empty_gt: drop images without any thing-instance polygon (ignored for "test", whose labels are
            withheld). An image whose instances are all hidden by later polygons would still be kept, with an
            empty target; deciding that would need rasterizing every image up front.
        skip_bad_images: on an unreadable image, warn and return the next image instead of raising.

    Items:
        image: ``(3, H, W)`` uint8 RGB at the original resolution.
        target: ``masks`` ``(N, H, W)`` bool (disjoint), ``labels`` ``(N,)`` int64 indices into ``CLASSES``,
            ``image_id`` int, ``file_name`` str (relative to ``root``), ``orig_size`` ``(H, W)``.

    Attributes: ``CLASSES``, ``cat_ids`` (list: label -> Cityscapes label id, ``cat_ids[0] == 24`` for person,
    the COCO category ids of ``coco``, as in ``CocoDataset``), ``images`` (one ``CityscapesImage`` per item),
    ``ground_truth()`` and ``coco`` (the ground truth as a COCO dict / a pycocotools object), ``root``, ``split``.
    """

    CLASSES = CLASSES

    def __init__(self, root: str | Path, split: str = "train", flip_prob: float = 0.0, filter_empty_gt: bool = True,
                 skip_bad_images: bool = False):
        self.root = Path(root)
        self.split = split
        self.flip_prob = flip_prob
        self.skip_bad_images = skip_bad_images
        self.cat_ids = list(CAT_IDS)
        images = scan_split(self.root, split)
        if filter_empty_gt and split != "test":
            images = [image for image in images if image.num_polygons > 0]
            if not images:
                raise DataError(f"{root}: no image of split {split} has a {'/'.join(CLASSES)} instance")
        # serialized: forked workers share the records instead of copying them (see solov2.data.records)
        self.images = SerializedList(images)
        self._ground_truth: SerializedList | None = None
        self._bad: set[int] = set()  # indices already found unreadable (skip_bad_images)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def img_ids(self) -> list[int]:
        """The COCO image id of each item, in data set order (as ``CocoDataset.img_ids``)."""
        return [image.image_id for image in self.images]

    @img_ids.setter
    def img_ids(self, ids) -> None:
        wanted = {int(i) for i in ids}
        self.images = SerializedList(image for image in self.images if image.image_id in wanted)

    def __getitem__(self, index: int) -> tuple[Tensor, dict]:
        if not self.skip_bad_images:
            return self.load(index)
        # Only unreadable images are skipped; a broken annotation still stops (it is read after the choice).
        i, image = first_usable(index, len(self), self._bad,
                                lambda j: read_image(str(self.root / self.images[j].file_name)),
                                f"{self.root}: no readable image in leftImg8bit/{self.split}")
        return self.load(i, image)

    def load(self, i: int, image: Tensor | None = None) -> tuple[Tensor, dict]:
        """Item ``i`` with no skipping (``image``: already read); DataError naming an unreadable file."""
        info = self.images[i]
        if image is None:
            image = read_image(str(self.root / info.file_name))
        masks, labels = self.load_instances(i)
        h, w = image.shape[-2:]
        if info.ann_file and masks.shape[-2:] != (h, w):
            raise DataError(f"{self.root / info.ann_file}: says {masks.shape[-2]}x{masks.shape[-1]} but the image "
                            f"is {h}x{w}")
        masks, labels = torch.from_numpy(masks), torch.from_numpy(labels)
        if self.flip_prob > 0 and torch.rand(()).item() < self.flip_prob:
            image, masks = hflip(image, masks)
        return image, {"masks": masks, "labels": labels, "image_id": info.image_id, "file_name": info.file_name,
                       "orig_size": (int(h), int(w))}

    def load_instances(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Masks ``(N, H, W)`` bool and labels ``(N,)`` int64 of image ``i``, unflipped (see rasterize_instances).

        Test images without annotation get ``N = 0`` masks of the image's size.
        """
        info = self.images[i]
        if info.ann_file is None:
            with Image.open(self.root / info.file_name) as im:  # reads the header only
                w, h = im.size
            return np.zeros((0, h, w), dtype=bool), np.zeros((0,), dtype=np.int64)
        path = self.root / info.ann_file
        annotation = load_annotation(path)
        try:
            return rasterize_instances(annotation)
        except (ValueError, TypeError) as e:  # e.g. a malformed polygon
            raise DataError(f"{path}: cannot rasterize polygons ({type(e).__name__}: {e})") from e

    def ground_truth(self) -> dict:
        """COCO instance content of this dataset's images (:meth:`to_coco_dict`, the ground truth for
        evaluation). Rasterizes every image on first use; kept serialized, a fresh dict per call."""
        if self._ground_truth is None:
            self._ground_truth = SerializedList([self.to_coco_dict()])
        return self._ground_truth[0]

    @property
    def coco(self) -> COCO:
        """:meth:`ground_truth` as a pycocotools ``COCO``, built anew on each access (not kept)."""
        return coco_from_dict(self.ground_truth())

    def to_coco_dict(self, file_name_prefix: str = "") -> dict:
        """COCO instance JSON content for this dataset's images; see ``cityscapes_to_coco``.

        ``file_name`` is the image path relative to ``root`` with ``file_name_prefix`` removed from its front.
        Segmentations are RLE (``counts`` as str), ``category_id`` is the Cityscapes label id, ``iscrowd`` is 0:
        groups (``cargroup``) are not exported.
        """
        images, annotations = [], []
        for i, info in enumerate(self.images):
            masks, labels = self.load_instances(i)
            h, w = masks.shape[-2:]
            file_name = info.file_name[len(file_name_prefix):] if info.file_name.startswith(file_name_prefix) \
                else info.file_name
            images.append({"id": info.image_id, "file_name": file_name, "height": int(h), "width": int(w)})
            for mask, label in zip(masks, labels):
                annotations.append(_mask_annotation(mask, CAT_IDS[label], info.image_id, len(annotations) + 1))
        categories = [{"id": cat_id, "name": name, "supercategory": name2label[name].category}
                      for name, cat_id in zip(CLASSES, CAT_IDS)]
        return {"images": images, "annotations": annotations, "categories": categories}


def _mask_annotation(mask: np.ndarray, category_id: int, image_id: int, ann_id: int) -> dict:
    """One COCO annotation with an RLE segmentation of a ``(H, W)`` bool mask."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "iscrowd": 0,
            "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")},
            "area": float(mask_utils.area(rle)), "bbox": [float(v) for v in mask_utils.toBbox(rle)]}


def cityscapes_to_coco(root: str | Path, out_json: str | Path, split: str = "train") -> dict:
    """Write a COCO instance JSON of one Cityscapes split (all its images, empty ones included).

    The file follows the MMDetection convention for Cityscapes: ``file_name`` is relative to
    ``<root>/leftImg8bit/<split>`` (``<city>/<name>_leftImg8bit.png``), so it pairs with that folder as image
    prefix. Image ids match ``CityscapesDataset(root, split).images[*].image_id``; categories carry the
    Cityscapes label ids (person = 24 ... bicycle = 33); segmentations are RLE of the same non-overlapping masks
    the dataset yields, so ``COCO(out_json).annToMask`` reproduces them exactly.

    Returns the written dict.
    """
    dataset = CityscapesDataset(root, split=split, filter_empty_gt=False)
    content = dataset.to_coco_dict(file_name_prefix=f"leftImg8bit/{split}/")
    out_json = Path(out_json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(content))
    return content

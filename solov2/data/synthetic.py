"""The built-in data set: textured shapes on textured backgrounds, with exact instance masks.

Every image is drawn from ``numpy.random.default_rng([seed, index])``, so image ``i`` depends only on the
seed and ``i`` (not on the number of images or on which images were drawn before). Shapes are painted one
after another and later shapes occlude earlier ones; a mask is exactly the pixels where its shape is
visible. A shape that would leave an earlier one (or itself) with a tiny visible area is not placed at
all, so every painted shape has a label and no visible shape is unlabeled.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import numbers
import os

import cv2
import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch import Tensor

from solov2.data.transforms import hflip

__all__ = ["SyntheticShapes", "render_shapes", "write_shapes_coco", "SHAPE_CLASSES"]

SHAPE_CLASSES = ("disc", "rectangle", "triangle", "ring", "star")

MIN_SIZE = 12  # smallest shape diameter in pixels
MAX_FRACTION = 0.6  # largest shape diameter, as a fraction of the shorter image side
MIN_VISIBLE = 40  # pixels every instance keeps visible ...
MIN_VISIBLE_FRACTION = 0.25  # ... and this fraction of its own area
MAX_INSTANCES = 6
TRIES = 4  # placements tried per shape before giving it up


class SyntheticShapes(torch.utils.data.Dataset):
    """Images of discs, rectangles, triangles, rings and stars, generated on the fly.

    ``dataset[i]`` has the format of :class:`~solov2.data.CocoDataset`: ``(image, target)`` with ``image``
    ``(3, H, W)`` uint8 RGB and ``target`` ``{"masks": (N, H, W) bool, "labels": (N,) int64,
    "image_id": i + 1, "file_name": "{i:06d}.png", "orig_size": (H, W)}``; 1 to 6 instances per image.

    Args:
        num_images: length of the data set.
        seed: the demo uses seed 0 for training and seed 1 for validation.
        image_size: ``(H, W)`` or one int for square images.
        flip_prob: probability of a random horizontal flip (from torch's RNG, so it varies per epoch).
        classes: the shape classes drawn, a subset of :data:`SHAPE_CLASSES` (category ids 1.. in this order);
            default all five. With other classes and object sizes the same generator makes a second data set
            that a recipe was not tuned on.
        object_size: ``(min, max)`` shape diameter in pixels, drawn log-uniformly; default 12 px to 0.6 of the
            shorter image side.
    """

    CLASSES = SHAPE_CLASSES

    def __init__(self, num_images: int = 1000, seed: int = 0, image_size: int | tuple[int, int] = 256,
                 flip_prob: float = 0.0, classes: tuple[str, ...] | None = None,
                 object_size: tuple[float, float] | None = None):
        if num_images < 0:
            raise ValueError(f"SyntheticShapes: num_images must be >= 0, got {num_images}")
        self.num_images, self.seed, self.flip_prob = int(num_images), int(seed), flip_prob
        self.image_size = _as_size(image_size)
        self.CLASSES = _as_classes(classes)
        self.object_size = _as_object_size(object_size, self.image_size)
        self.cat_ids = list(range(1, len(self.CLASSES) + 1))
        self.img_ids = list(range(1, self.num_images + 1))
        self._coco: COCO | None = None

    def __len__(self) -> int:
        return self.num_images

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image ``index`` as numpy: ``(H, W, 3)`` uint8 RGB, ``(N, H, W)`` bool masks, ``(N,)`` int64 labels."""
        if not 0 <= index < self.num_images:
            raise IndexError(f"SyntheticShapes: index {index} out of range [0, {self.num_images})")
        return render_shapes(np.random.default_rng([self.seed, index]), self.image_size, self.CLASSES,
                             self.object_size)

    def __getitem__(self, index: int) -> tuple[Tensor, dict]:
        image, masks, labels = self.render(index)
        image = torch.from_numpy(image).permute(2, 0, 1).contiguous()
        masks = torch.from_numpy(masks)
        if self.flip_prob > 0 and torch.rand(()).item() < self.flip_prob:
            image, masks = hflip(image, masks)
        return image, {"masks": masks, "labels": torch.from_numpy(labels), "image_id": index + 1,
                       "file_name": f"{index:06d}.png", "orig_size": self.image_size}

    @property
    def coco(self) -> COCO:
        """The ground truth as a ``pycocotools`` ``COCO`` (RLE masks), built on first use."""
        if self._coco is None:
            data = _coco_dict(((i, self.render(i)[1:]) for i in range(self.num_images)), self.CLASSES)
            data["images"] = [_image_entry(i, self.image_size) for i in range(self.num_images)]
            self._coco = COCO()
            self._coco.dataset = data
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
                self._coco.createIndex()
        return self._coco


def write_shapes_coco(out_dir: str, num_images: int, seed: int = 0, image_size: int | tuple[int, int] = 256,
                      classes: tuple[str, ...] | None = None, object_size: tuple[float, float] | None = None) -> str:
    """Write ``out_dir/images/{i:06d}.png`` and ``out_dir/annotations.json`` (COCO format, masks as compressed
    RLE, since polygons cannot describe the rings' holes exactly). Returns the annotation file's path.

    The images and masks are those of ``SyntheticShapes(num_images, seed, image_size, classes=classes,
    object_size=object_size)``.
    """
    dataset = SyntheticShapes(num_images, seed, image_size, classes=classes, object_size=object_size)
    img_dir = os.path.join(out_dir, "images")
    os.makedirs(img_dir, exist_ok=True)
    instances = []
    for i in range(num_images):
        image, masks, labels = dataset.render(i)
        path = os.path.join(img_dir, f"{i:06d}.png")
        if not cv2.imwrite(path, np.ascontiguousarray(image[..., ::-1])):  # cv2 writes BGR
            raise OSError(f"{path}: cannot write image")
        instances.append((i, (masks, labels)))
    data = _coco_dict(instances, dataset.CLASSES)
    data["images"] = [_image_entry(i, dataset.image_size) for i in range(num_images)]
    ann_file = os.path.join(out_dir, "annotations.json")
    with open(ann_file, "w", encoding="utf-8") as f:
        json.dump(data, f)
    return ann_file


def render_shapes(rng: np.random.Generator, size: tuple[int, int], classes: tuple[str, ...] = SHAPE_CLASSES,
                  object_size: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one image. Returns ``(H, W, 3)`` uint8 RGB, ``(N, H, W)`` bool visible masks, ``(N,)`` int64 labels
    (indices into ``classes``). ``object_size``: ``(min, max)`` diameter in pixels (default: see SyntheticShapes)."""
    h, w = size
    lo, hi = object_size or _as_object_size(None, size)
    image = _texture(rng, h, w, rng.uniform(0, 255, 3), contrast=rng.uniform(15, 70))
    owner = np.full((h, w), -1, dtype=np.int16)  # index of the instance visible at each pixel
    full_area, visible, labels = [], [], []
    for _ in range(rng.integers(1, MAX_INSTANCES + 1)):
        for _ in range(TRIES):
            label = int(rng.integers(len(classes)))
            canvas = _draw_shape(rng, classes[label], h, w, lo, hi)
            x, y, bw, bh = cv2.boundingRect(canvas)
            roi = (slice(y, y + bh), slice(x, x + bw))
            m = canvas[roi].astype(bool)
            area = int(m.sum())
            covered = np.bincount(owner[roi][m] + 1, minlength=len(labels) + 1)[1:]
            left = np.asarray(visible, dtype=np.int64) - covered
            if _big_enough(area, area) and all(_big_enough(a, f) for a, f in zip(left, full_area)):
                break
        else:
            continue  # no placement keeps every instance visible enough: give this shape up
        _paint(rng, image[roi], m)
        owner[roi][m] = len(labels)
        visible = [*left.tolist(), area]
        full_area.append(area)
        labels.append(label)
    masks = owner[None] == np.arange(len(labels), dtype=np.int16)[:, None, None]  # (N, H, W)
    image = image + rng.normal(0, 4, (h, w, 1)).astype(np.float32)  # sensor-like noise, shared by the channels
    return np.clip(image, 0, 255).astype(np.uint8), masks, np.asarray(labels, dtype=np.int64)


def _big_enough(visible: int, full: int) -> bool:
    return visible >= max(MIN_VISIBLE, MIN_VISIBLE_FRACTION * full)


def _draw_shape(rng: np.random.Generator, name: str, h: int, w: int, lo: float, hi: float) -> np.ndarray:
    """A ``(H, W)`` uint8 0/1 canvas with one shape of class ``name`` and a diameter between ``lo`` and ``hi``,
    drawn without anti-aliasing so that the painted pixels and the mask are the same."""
    r = math.exp(rng.uniform(math.log(lo), math.log(hi))) / 2  # log-uniform: as many small as large shapes
    # keep the center at least r/2 inside the image so that no more than about half a shape is cut off
    cx = rng.uniform(min(r / 2, w / 2), max(w - r / 2, w / 2))
    cy = rng.uniform(min(r / 2, h / 2), max(h - r / 2, h / 2))
    canvas = np.zeros((h, w), dtype=np.uint8)
    if name in ("disc", "ring"):
        cv2.circle(canvas, (round(cx), round(cy)), max(round(r), 1), 1, -1, cv2.LINE_8)
        if name == "ring":
            cv2.circle(canvas, (round(cx), round(cy)), max(round(r * rng.uniform(0.45, 0.7)), 1), 0, -1,
                       cv2.LINE_8)
        return canvas
    if name == "rectangle":
        pts = cv2.boxPoints(((cx, cy), (2 * r, 2 * r * rng.uniform(0.35, 1.0)), rng.uniform(0, 180)))
    elif name == "triangle":
        angles = rng.uniform(0, 2 * math.pi) + np.radians([0, 120, 240] + rng.uniform(-20, 20, 3))
        pts = np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], 1)
    else:  # star: 5 spikes, alternating outer and inner radius
        angles = rng.uniform(0, 2 * math.pi) + np.arange(10) * math.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, r, r * rng.uniform(0.38, 0.5))
        pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1)
    cv2.fillPoly(canvas, [np.round(pts).astype(np.int32)], 1, cv2.LINE_8)
    return canvas


def _paint(rng: np.random.Generator, region: np.ndarray, mask: np.ndarray) -> None:
    """Fill ``region[mask]`` (a view into the image) with a texture that stands out from what is there."""
    under = region[mask].mean(0)
    candidates = rng.uniform(0, 255, (3, 3))
    color = candidates[np.abs(candidates - under).sum(1).argmax()]  # the most contrasting of three colours
    fill = _texture(rng, *mask.shape, color, contrast=rng.uniform(15, 60))
    region[mask] = fill[mask]


def _texture(rng: np.random.Generator, h: int, w: int, color: np.ndarray, contrast: float) -> np.ndarray:
    """``(h, w, 3)`` float32 around ``color``: flat, linear gradient, stripes or smooth blotches."""
    kind = rng.integers(4)
    color = np.asarray(color, dtype=np.float32)
    if kind == 0:
        return np.broadcast_to(color, (h, w, 3)).copy()
    other = np.clip(color + rng.uniform(-1, 1, 3) * contrast * 2, 0, 255).astype(np.float32)
    if kind == 3:
        small = rng.uniform(0, 1, (max(h // 8, 1) + 1, max(w // 8, 1) + 1, 1)).astype(np.float32)
        t = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)[..., None]
    else:
        theta = rng.uniform(0, math.pi)
        xs, ys = np.arange(w, dtype=np.float32)[None], np.arange(h, dtype=np.float32)[:, None]
        t = xs * math.cos(theta) + ys * math.sin(theta)  # (h, w) distance along the direction theta
        if kind == 1:
            t = (t - t.min()) / max(float(np.ptp(t)), 1.0)
        else:
            t = ((t / rng.uniform(3, 12)) % 1.0 < 0.5).astype(np.float32)
        t = t[..., None]
    return color + t * (other - color)


def _coco_dict(instances, classes: tuple[str, ...] = SHAPE_CLASSES) -> dict:
    """``(index, (masks, labels))`` pairs -> COCO dict with RLE annotations (``images`` left to the caller)."""
    annotations = []
    for i, (masks, labels) in instances:
        if len(labels) == 0:
            continue
        rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
        areas, boxes = mask_utils.area(rles), mask_utils.toBbox(rles)
        for rle, label, area, box in zip(rles, labels, areas, boxes):
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(label) + 1,
                                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
                                "area": float(area), "bbox": [float(v) for v in box], "iscrowd": 0})
    categories = [{"id": k + 1, "name": n, "supercategory": "shape"} for k, n in enumerate(classes)]
    return {"info": {"description": "solov2 synthetic shapes"}, "annotations": annotations,
            "categories": categories}


def _image_entry(index: int, size: tuple[int, int]) -> dict:
    return {"id": index + 1, "file_name": f"{index:06d}.png", "height": size[0], "width": size[1]}


def _as_size(size) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, numbers.Integral) else tuple(size)
    if h < 16 or w < 16:
        raise ValueError(f"SyntheticShapes: image_size must be at least 16x16, got {h}x{w}")
    return int(h), int(w)


def _as_classes(classes) -> tuple[str, ...]:
    if classes is None:
        return SHAPE_CLASSES
    classes = tuple(classes)
    unknown = [c for c in classes if c not in SHAPE_CLASSES]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise ValueError(f"SyntheticShapes: classes must be distinct names from {', '.join(SHAPE_CLASSES)}; "
                         f"got {', '.join(classes) or 'none'}")
    return classes


def _as_object_size(object_size, image_size: tuple[int, int]) -> tuple[float, float]:
    if object_size is None:
        hi = MAX_FRACTION * min(image_size)
        return min(MIN_SIZE, hi), hi
    lo, hi = (float(v) for v in object_size)
    if not 2 <= lo <= hi <= min(image_size):
        raise ValueError(f"SyntheticShapes: object_size must be (min, max) with 2 <= min <= max <= the image's "
                         f"shorter side {min(image_size)}, got ({lo:g}, {hi:g})")
    return lo, hi

"""A tiny Cityscapes tree for tests: 3 train and 2 val images of 64 x 128 pixels, polygons only.

All polygons are axis-aligned rectangles, so the expected visible masks below are written by hand as slices.
``ImageDraw.polygon`` fills a rectangle's corner pixels inclusively: ``rect(x0, y0, x1, y1)`` covers
``[y0:y1 + 1, x0:x1 + 1]``. No ``*_instanceIds.png`` is written; evaluation must generate them.

Cases covered: occlusion of an instance by a later instance, by later stuff (``building``) and by a later group
(``cargroup`` / ``persongroup`` are never instances), a fully hidden instance (dropped), ``license plate`` and a
``deleted`` object (never drawn, so they hide nothing), and a train image without instances (filtered by
``filter_empty_gt``).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

H, W = 64, 128


def rect(x0: int, y0: int, x1: int, y1: int) -> list[list[int]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


# split -> city -> file stem -> objects in draw order: (label, rectangle, extra JSON keys)
LAYOUT = {
    "train": {"aachen": {
        "aachen_000000_000019": [
            ("road", (0, 40, 127, 63), {}),
            ("rider", (15, 25, 24, 34), {}),  # entirely under the car drawn next: dropped
            ("car", (10, 20, 49, 49), {}),
            ("license plate", (20, 40, 29, 45), {}),  # id -1: never drawn, hides nothing
            ("person", (40, 10, 59, 59), {}),  # hides the car's right part
            ("bicycle", (70, 10, 99, 39), {}),
            ("building", (90, 0, 127, 19), {}),  # stuff drawn later hides the bicycle's top-right corner
            ("cargroup", (105, 42, 127, 63), {}),
            ("building", (40, 10, 59, 59), {"deleted": 1}),  # deleted: not drawn
        ],
        "aachen_000001_000019": [
            ("sky", (0, 0, 127, 15), {}),
            ("truck", (5, 5, 34, 34), {}),
            ("bus", (30, 10, 69, 39), {}),  # hides a strip of the truck
            ("rider", (75, 10, 94, 49), {}),
            ("motorcycle", (75, 45, 99, 60), {}),  # hides the rider's bottom rows
            ("persongroup", (105, 0, 127, 63), {}),
        ],
        "aachen_000002_000019": [  # no instance at all
            ("road", (0, 40, 127, 63), {}),
            ("building", (0, 0, 127, 39), {}),
            ("persongroup", (50, 20, 79, 59), {}),
        ],
    }},
    "val": {"frankfurt": {
        "frankfurt_000000_000294": [
            ("road", (0, 44, 127, 63), {}),
            ("train", (0, 5, 59, 39), {}),
            ("person", (20, 20, 39, 63), {}),  # in front of the train
            ("car", (70, 30, 109, 55), {}),
            ("cargroup", (110, 30, 127, 55), {}),
        ],
        "frankfurt_000001_000538": [
            ("car", (10, 10, 49, 39), {}),
            ("person", (30, 15, 49, 54), {}),  # in front of the car
            ("bicycle", (60, 20, 89, 49), {}),
            ("rider", (65, 5, 84, 34), {}),  # in front of the bicycle
            ("building", (100, 0, 127, 63), {}),
        ],
    }},
}


def _mask(*keep: tuple[slice, slice], drop: tuple[tuple[slice, slice], ...] = ()) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    for ys, xs in keep:
        m[ys, xs] = True
    for ys, xs in drop:
        m[ys, xs] = False
    return m


s = np.s_
# file stem -> visible instances in file order: (class name, (H, W) bool mask), worked out by hand
EXPECTED = {
    "aachen_000000_000019": [
        ("car", _mask(s[20:50, 10:40])),  # x 40..49 under the person
        ("person", _mask(s[10:60, 40:60])),
        ("bicycle", _mask(s[10:40, 70:100], drop=(s[10:20, 90:100],))),  # corner under the building
    ],
    "aachen_000001_000019": [
        ("truck", _mask(s[5:35, 5:35], drop=(s[10:35, 30:35],))),
        ("bus", _mask(s[10:40, 30:70])),
        ("rider", _mask(s[10:45, 75:95])),
        ("motorcycle", _mask(s[45:61, 75:100])),
    ],
    "aachen_000002_000019": [],
    "frankfurt_000000_000294": [
        ("train", _mask(s[5:40, 0:60], drop=(s[20:40, 20:40],))),
        ("person", _mask(s[20:64, 20:40])),
        ("car", _mask(s[30:56, 70:110])),
    ],
    "frankfurt_000001_000538": [
        ("car", _mask(s[10:40, 10:50], drop=(s[15:40, 30:50],))),
        ("person", _mask(s[15:55, 30:50])),
        ("bicycle", _mask(s[20:50, 60:90], drop=(s[20:35, 65:85],))),
        ("rider", _mask(s[5:35, 65:85])),
    ],
}
del s

# label name -> RGB used to paint the images (any distinct colours will do)
_COLORS = {"road": (128, 64, 128), "sky": (70, 130, 180), "building": (70, 70, 70), "person": (220, 20, 60),
           "rider": (255, 0, 0), "car": (0, 0, 142), "truck": (0, 0, 70), "bus": (0, 60, 100),
           "train": (0, 80, 100), "motorcycle": (0, 0, 230), "bicycle": (119, 11, 32), "cargroup": (0, 0, 142),
           "persongroup": (220, 20, 60), "license plate": (0, 0, 142)}


def _write_image(path: Path, objects: list) -> None:
    image = Image.new("RGB", (W, H), (90, 90, 90))
    draw = ImageDraw.Draw(image)
    for label, box, extra in objects:
        if not extra.get("deleted"):
            draw.polygon([tuple(p) for p in rect(*box)], fill=_COLORS[label])
    image.save(path)


def make_tiny_cityscapes(root: Path) -> Path:
    """Write the tree described by ``LAYOUT`` under ``root`` (created if needed) and return ``root``."""
    root = Path(root)
    for split, cities in LAYOUT.items():
        for city, stems in cities.items():
            image_dir = root / "leftImg8bit" / split / city
            ann_dir = root / "gtFine" / split / city
            image_dir.mkdir(parents=True, exist_ok=True)
            ann_dir.mkdir(parents=True, exist_ok=True)
            for stem, objects in stems.items():
                _write_image(image_dir / f"{stem}_leftImg8bit.png", objects)
                ann = {"imgHeight": H, "imgWidth": W,
                       "objects": [{"label": label, "polygon": rect(*box), **extra} for label, box, extra in objects]}
                (ann_dir / f"{stem}_gtFine_polygons.json").write_text(json.dumps(ann, indent=1))
    return root

"""LabelMe folders -> one COCO instance segmentation JSON (``solov2 labelme-to-coco FOLDER OUT.json``).

Each LabelMe ``*.json`` (found recursively under the folder) describes one image: ``imagePath`` (relative to
the JSON file), ``imageHeight``/``imageWidth`` and ``shapes``. Conversion rules:

* ``polygon`` shapes become COCO polygons; ``rectangle`` (2 corner points) a 4-point polygon; ``circle``
  (center, a point on the circle) a 64-point polygon. Other shape types (line, linestrip, point, mask) are
  not instances, and polygons without area (fewer than 3 points, all on a line) are degenerate: both are
  skipped, each with one warning line naming its LabelMe file and the shape (its index, label and type; at
  most :data:`MAX_WARNINGS` lines, then one that counts the rest).
* Shapes with the same ``label`` and the same non-null ``group_id`` in one file are one instance with several
  polygons (an object split by an occluder); a shape with ``group_id`` null is an instance of its own.
* Categories are the labels in sorted order, with ids 1..C; or, with ``categories_from`` (a COCO JSON, e.g.
  the training set's), that file's categories, ids and names as they are, so that a val folder lacking a
  class keeps the training set's ids. A label the file lacks is a :class:`DataError` naming both files.
* The image file must exist; its size (after its EXIF orientation, as LabelMe shows it) must equal
  ``imageHeight`` x ``imageWidth``.
* ``file_name`` is written relative to ``image_root`` (default: the folder), so
  ``CocoDataset(OUT.json, image_root)`` reads the images.

A broken JSON, a missing image or a size mismatch raises :class:`DataError` with one line naming the file.
"""
from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from solov2.errors import DataError

__all__ = ["labelme_to_coco", "read_labelme", "shape_polygon", "read_categories"]

CIRCLE_POINTS = 64
AREA_SHAPES = ("polygon", "rectangle", "circle")
MAX_WARNINGS = 20  # skipped-shape lines printed one by one; the rest are counted in one more line
_EXIF_ORIENTATION = 0x0112


def labelme_to_coco(folder: str, out_json: str | None = None, image_root: str | None = None,
                    categories_from: str | None = None, warn: Callable[[str], None] | None = None) -> dict:
    """Convert every LabelMe JSON under ``folder``; write ``out_json`` if given; return the COCO dict.

    ``categories_from``: a COCO JSON whose ``categories`` (ids and names) the output uses (default: the labels
    found, sorted, ids 1..C). ``warn``: called with each warning line about skipped shapes (default: the
    ``solov2`` logger's ``warning``)."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{folder}: folder not found")
    image_root = Path(image_root) if image_root else root
    out = Path(out_json).resolve() if out_json else None
    files = [p for p in sorted(root.rglob("*.json")) if p.resolve() != out]
    if not files:
        raise DataError(f"{folder}: no LabelMe .json files found")
    records = [read_labelme(p) for p in files]
    if categories_from:
        categories = read_categories(categories_from)
        cat_of = {c["name"]: c["id"] for c in categories}
        for rec in records:
            for inst in rec["instances"]:
                if inst["label"] not in cat_of:
                    raise DataError(f"{rec['json']}: label {inst['label']!r} is not a category of {categories_from} "
                                    f"({', '.join(map(repr, cat_of))})")
    else:
        labels = sorted({inst["label"] for rec in records for inst in rec["instances"]})
        categories = [{"id": i, "name": name} for i, name in enumerate(labels, start=1)]
        cat_of = {c["name"]: c["id"] for c in categories}
    images, annotations = [], []
    for image_id, rec in enumerate(records, start=1):
        h, w = rec["height"], rec["width"]
        images.append({"id": image_id, "file_name": Path(os.path.relpath(rec["image"], image_root)).as_posix(),
                       "height": h, "width": w, "labelme_file": Path(os.path.relpath(rec["json"], root)).as_posix()})
        for inst in rec["instances"]:
            rle = mask_utils.merge(mask_utils.frPyObjects(inst["polygons"], h, w))
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cat_of[inst["label"]],
                                "segmentation": inst["polygons"], "area": float(mask_utils.area(rle)),
                                "bbox": [float(v) for v in mask_utils.toBbox(rle)], "iscrowd": 0})
    _warn_skipped(records, warn or logging.getLogger("solov2").warning)
    data = {"images": images, "annotations": annotations, "categories": categories}
    if out_json:
        os.makedirs(os.path.dirname(os.path.abspath(out_json)), exist_ok=True)
        with open(out_json, "w", encoding="utf-8") as f:
            json.dump(data, f)
    return data


def _warn_skipped(records: list[dict], warn: Callable[[str], None]) -> None:
    """One line per skipped shape (file, index, label, type, why), at most MAX_WARNINGS, then a count."""
    lines = [f"{rec['json']}: shape {s['index']} (label {s['label']!r}, {s['kind']}) skipped: {s['reason']}"
             for rec in records for s in rec["skipped_shapes"]]
    for line in lines[:MAX_WARNINGS]:
        warn(line)
    if len(lines) > MAX_WARNINGS:
        counts = Counter(kind for rec in records for kind in rec["skipped"].elements())
        warn(f"... and {len(lines) - MAX_WARNINGS} more skipped shapes ({len(lines)} in all: "
             + ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) + ")")


def read_categories(path: str) -> list[dict]:
    """The ``categories`` of a COCO JSON file (each with an int ``id`` and a unique ``name``), as written there;
    a missing file, broken JSON or bad category list is a one-line error naming the file."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: COCO file (--categories-from) not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: invalid JSON ({' '.join(str(exc).split())})") from None
    categories = data.get("categories") if isinstance(data, dict) else None
    if not isinstance(categories, list) or not categories:
        raise DataError(f"{path}: no 'categories' list (expected a COCO annotation file)")
    for c in categories:
        if not (isinstance(c, dict) and isinstance(c.get("id"), int) and isinstance(c.get("name"), str)):
            raise DataError(f"{path}: category {c!r} needs an integer 'id' and a 'name'")
    for key in ("id", "name"):
        repeated = sorted(str(v) for v, n in Counter(c[key] for c in categories).items() if n > 1)
        if repeated:
            raise DataError(f"{path}: category {key}s must be unique; repeated: {', '.join(repeated)}")
    return categories


def read_labelme(path: str | Path) -> dict:
    """One LabelMe file -> ``{"json", "image" (path), "height", "width", "instances": [{"label", "polygons":
    [[x0, y0, x1, y1, ...], ...]}], "skipped": Counter of skipped shape kinds, "skipped_shapes": [{"index",
    "label", "kind", "reason"}]}``."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: invalid JSON ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list) or not data.get("imagePath"):
        raise DataError(f"{path}: not a LabelMe file (needs 'shapes' and 'imagePath')")
    image = path.parent / str(data["imagePath"]).replace("\\", "/")  # LabelMe on Windows writes backslashes
    if not image.is_file():
        raise DataError(f"{path}: image {image} (imagePath {data['imagePath']!r}) not found")
    width, height = _upright_size(image, path)
    if "imageHeight" in data and "imageWidth" in data and (data["imageHeight"], data["imageWidth"]) != (height, width):
        raise DataError(f"{path}: image {image} is {width} x {height} (width x height) but the JSON says "
                        f"{data['imageWidth']} x {data['imageHeight']}")
    groups: dict[tuple, list] = defaultdict(list)  # (label, group_id or a unique key) -> polygons
    skipped, skipped_shapes = Counter(), []
    for k, shape in enumerate(data["shapes"]):
        kind = shape.get("shape_type") or "polygon"
        label = str(shape.get("label", ""))
        polygon, reason = _polygon(shape)
        if polygon is None:
            skipped[kind if kind not in AREA_SHAPES else f"degenerate {kind}"] += 1
            skipped_shapes.append({"index": k, "label": label, "kind": kind, "reason": reason})
            continue
        group = shape.get("group_id")
        groups[(label, ("group", group) if group is not None else ("shape", k))].append(polygon)
    return {"json": path, "image": image, "height": height, "width": width, "skipped": skipped,
            "skipped_shapes": skipped_shapes,
            "instances": [{"label": label, "polygons": polys} for (label, _), polys in groups.items()]}


def shape_polygon(shape: dict) -> list[float] | None:
    """A LabelMe shape as a flat COCO polygon ``[x0, y0, x1, y1, ...]``; None if it is no area shape."""
    return _polygon(shape)[0]


def _polygon(shape: dict) -> tuple[list[float] | None, str]:
    """:func:`shape_polygon` and, where it is None, why (for the warning line)."""
    kind = shape.get("shape_type") or "polygon"
    if kind not in AREA_SHAPES:
        return None, f"a {kind} is not an instance (only {', '.join(AREA_SHAPES)} are)"
    try:
        points = np.asarray(shape.get("points") or [], dtype=np.float64).reshape(-1, 2)
    except (ValueError, TypeError):
        return None, "degenerate: its points are not (x, y) pairs of numbers"
    if kind in ("rectangle", "circle") and len(points) != 2:
        return None, f"degenerate: a {kind} needs 2 points, it has {len(points)}"
    if kind == "rectangle":
        (x0, y0), (x1, y1) = points
        points = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    elif kind == "circle":
        (cx, cy), edge = points
        r = float(np.hypot(*(edge - points[0])))
        t = np.linspace(0, 2 * math.pi, CIRCLE_POINTS, endpoint=False)
        points = np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)
    if len(points) < 3:
        return None, f"degenerate: {len(points)} point(s), a polygon needs 3"
    if not np.isfinite(points).all():
        return None, "degenerate: a point is not finite"
    x, y = points[:, 0], points[:, 1]
    if 0.5 * abs(float(x @ np.roll(y, -1) - y @ np.roll(x, -1))) <= 0:  # shoelace
        return None, "degenerate: no area (its points are on one line)"
    return points.reshape(-1).tolist(), ""


def _upright_size(image: Path, json_path: Path) -> tuple[int, int]:
    """``(width, height)`` as displayed (EXIF rotations of 90 degrees swap them), from the header only."""
    try:
        with Image.open(image) as im:
            width, height = im.size
            orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{json_path}: cannot read image {image} ({' '.join(str(exc).split())})") from None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)

"""LabelMe folders -> one COCO instance segmentation JSON (``solov2 labelme-to-coco FOLDER OUT.json``).

Each LabelMe ``*.json`` (found recursively under the folder) describes one image: ``imagePath`` (relative to
the JSON file), ``imageHeight``/``imageWidth`` and ``shapes``. Conversion rules:

* ``polygon`` shapes become COCO polygons; ``rectangle`` (2 corner points) a 4-point polygon; ``circle``
  (center, a point on the circle) a 64-point polygon. Other shape types (line, linestrip, point, mask) are
  not instances and are skipped, with one warning that counts them.
* Shapes with the same ``label`` and the same non-null ``group_id`` in one file are one instance with several
  polygons (an object split by an occluder); a shape with ``group_id`` null is an instance of its own.
* Categories are the labels in sorted order, with ids 1..C.
* The image file must exist; its size (after its EXIF orientation, as LabelMe shows it) must equal
  ``imageHeight`` x ``imageWidth``.
* ``file_name`` is written relative to ``image_root`` (default: the folder), so
  ``CocoDataset(OUT.json, image_root)`` reads the images.

A broken JSON, a missing image or a size mismatch raises :class:`DataError` with one line naming the file.
"""
from __future__ import annotations

import json
import math
import os
import warnings
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from solov2.errors import DataError

__all__ = ["labelme_to_coco", "read_labelme", "shape_polygon"]

CIRCLE_POINTS = 64
_EXIF_ORIENTATION = 0x0112


def labelme_to_coco(folder: str, out_json: str | None = None, image_root: str | None = None) -> dict:
    """Convert every LabelMe JSON under ``folder``; write ``out_json`` if given; return the COCO dict."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{folder}: folder not found")
    image_root = Path(image_root) if image_root else root
    out = Path(out_json).resolve() if out_json else None
    files = [p for p in sorted(root.rglob("*.json")) if p.resolve() != out]
    if not files:
        raise DataError(f"{folder}: no LabelMe .json files found")
    records = [read_labelme(p) for p in files]
    labels = sorted({inst["label"] for rec in records for inst in rec["instances"]})
    cat_of = {name: i for i, name in enumerate(labels, start=1)}
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
    skipped = Counter()
    for rec in records:
        skipped.update(rec["skipped"])
    if skipped:
        warnings.warn(f"{folder}: skipped shapes that are not instances or are degenerate: "
                      + ", ".join(f"{n} {kind}" for kind, n in sorted(skipped.items())), stacklevel=2)
    data = {"images": images, "annotations": annotations,
            "categories": [{"id": cat_of[name], "name": name} for name in labels]}
    if out_json:
        os.makedirs(os.path.dirname(os.path.abspath(out_json)), exist_ok=True)
        with open(out_json, "w", encoding="utf-8") as f:
            json.dump(data, f)
    return data


def read_labelme(path: str | Path) -> dict:
    """One LabelMe file -> ``{"json", "image" (path), "height", "width", "instances": [{"label", "polygons":
    [[x0, y0, x1, y1, ...], ...]}], "skipped": Counter of skipped shape kinds}``."""
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
    skipped = Counter()
    for k, shape in enumerate(data["shapes"]):
        kind = shape.get("shape_type") or "polygon"
        polygon = shape_polygon(shape)
        if polygon is None:
            skipped[kind if kind not in ("polygon", "rectangle", "circle") else f"degenerate {kind}"] += 1
            continue
        label = str(shape.get("label", ""))
        group = shape.get("group_id")
        groups[(label, ("group", group) if group is not None else ("shape", k))].append(polygon)
    return {"json": path, "image": image, "height": height, "width": width, "skipped": skipped,
            "instances": [{"label": label, "polygons": polys} for (label, _), polys in groups.items()]}


def shape_polygon(shape: dict) -> list[float] | None:
    """A LabelMe shape as a flat COCO polygon ``[x0, y0, x1, y1, ...]``; None if it is no area shape."""
    kind = shape.get("shape_type") or "polygon"
    try:
        points = np.asarray(shape.get("points") or [], dtype=np.float64).reshape(-1, 2)
    except ValueError:
        return None
    if kind == "rectangle" and len(points) == 2:
        (x0, y0), (x1, y1) = points
        points = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    elif kind == "circle" and len(points) == 2:
        (cx, cy), edge = points
        r = float(np.hypot(*(edge - points[0])))
        t = np.linspace(0, 2 * math.pi, CIRCLE_POINTS, endpoint=False)
        points = np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)
    elif kind != "polygon":
        return None
    if len(points) < 3 or not np.isfinite(points).all():
        return None
    x, y = points[:, 0], points[:, 1]
    if 0.5 * abs(float(x @ np.roll(y, -1) - y @ np.roll(x, -1))) <= 0:  # shoelace: no area
        return None
    return points.reshape(-1).tolist()


def _upright_size(image: Path, json_path: Path) -> tuple[int, int]:
    """``(width, height)`` as displayed (EXIF rotations of 90 degrees swap them), from the header only."""
    try:
        with Image.open(image) as im:
            width, height = im.size
            orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{json_path}: cannot read image {image} ({' '.join(str(exc).split())})") from None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)

"""A COCO instance file's content checked, cleaned and packed into numpy arrays (:class:`CocoRecords`).

Loading is built for train2017-sized files (118k images, 860k polygons): the JSON is parsed with ``orjson``,
every polygon coordinate of the file goes into one ``float64`` array in a single pass, and the checks (part
lengths, shoelace areas, finiteness) run on whole arrays rather than per annotation. The parsed JSON is released
afterwards, so what stays is the arrays (about the size of the coordinates, 8 bytes each) and not pycocotools'
Python objects. See :mod:`solov2.data.records` for why arrays.
"""
from __future__ import annotations

import ctypes
import itertools
import json
import math
import warnings

import numpy as np
import orjson
from pycocotools import mask as mask_utils

from solov2.data.records import SerializedList
from solov2.errors import DataError, one_line

__all__ = ["CocoRecords", "read_json"]

_NAN4 = (math.nan,) * 4
# Per-annotation status while cleaning, then the reason reported for each.
_OK, _PARTIAL = 0, 1
_REASONS = {1: "broken polygon part (instance kept)", 2: "unknown image id", 3: "unknown category id",
            4: "broken polygon", 5: "zero-area mask", 6: "RLE size differs from the image size", 7: "invalid RLE",
            8: "missing or invalid segmentation"}
_CODE = {reason: code for code, reason in _REASONS.items()}
_DROPPED = 2  # codes >= this drop the annotation


def read_json(ann_file: str):
    """Parsed content of ``ann_file``; invalid JSON is a one-line :class:`DataError` naming the file."""
    with open(ann_file, "rb") as f:
        raw = f.read()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # orjson is stricter than json (NaN, Infinity): take what the standard parser accepts
        try:
            return json.loads(raw.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise DataError(f"{ann_file}: invalid JSON ({one_line(exc)})") from None


class CocoRecords:
    """The usable content of a COCO instance file, as arrays (nothing here is a per-annotation Python object).

    Images keep the file's order; ``rows_of`` maps image ids to rows. Annotations are grouped by image (file
    order within an image): image row ``r`` owns annotations ``ann_start[r]:ann_start[r + 1]``. A polygon
    annotation owns parts ``part_range[a]`` of ``coords`` (``part_offsets[k]:part_offsets[k + 1]``, x, y
    interleaved, see :meth:`polygon_part`); an RLE annotation (``rle_index[a] >= 0``) has its segmentation in ``rles``.

    Attributes:
        categories: the file's category dicts (a few, plain objects).
        coords: every polygon coordinate, ``int32`` hundredths (``coord_scale`` 100) or ``float64`` (scale 1);
            read a part with :meth:`polygon_part`.
        image_ids: ``(I,)`` int64; by_id: ``(I,)`` rows in image id order; heights, widths: ``(I,)`` int64;
        file_names: :class:`SerializedList` of str.
        ann_ids, ann_category, ann_iscrowd (uint8), ann_area, ann_bbox ``(A, 4)`` (NaN where the file has none),
        part_range ``(A, 2)`` int64, rle_index ``(A,)`` int64.
        problems: ``{reason: [annotation ids]}`` of the annotations dropped or partly dropped.
        details: one line per dropped unknown-category annotation (up to 10), naming the category id.
        original_ids: the file's own image ids, aligned with ``image_ids``, when they were not all ints (they
            are then renumbered 1..N in file order); None otherwise.
    """

    def __init__(self, data, ann_file: str):
        """Check and pack parsed content ``data`` (consumed: ids renumbered, polygons taken out); ``ann_file``
        names it in messages."""
        _check_structure(data, ann_file)
        self.ann_file = ann_file
        self.original_ids = _int_image_ids(data)
        self.categories = [dict(c) for c in data["categories"]]
        cat_ids = {c["id"] for c in self.categories}
        row_of: dict = {}
        for k, img in enumerate(data["images"]):
            row_of[img["id"]] = k  # a repeated id: the last one wins, as in pycocotools
        rows = sorted(row_of.values()) if len(row_of) < len(data["images"]) else range(len(data["images"]))
        images = [data["images"][k] for k in rows]
        row_of = {img["id"]: r for r, img in enumerate(images)}
        self.image_ids = np.array([img["id"] for img in images], dtype=np.int64)
        self.heights = np.array([img["height"] for img in images], dtype=np.int64)
        self.widths = np.array([img["width"] for img in images], dtype=np.int64)
        self.file_names = SerializedList(str(img["file_name"]) for img in images)
        if self.original_ids is not None:
            self.original_ids = SerializedList(self.original_ids[k] for k in rows)
        self.by_id = np.argsort(self.image_ids, kind="stable")
        self._clean(data.get("annotations") or [], row_of, cat_ids)

    # -- building ------------------------------------------------------------------------------------------------
    def _clean(self, anns: list, row_of: dict, cat_ids: set) -> None:
        n = len(anns)
        next_id = 1 + max((a["id"] for a in anns if isinstance(a, dict) and type(a.get("id")) is int), default=0)
        ids, rows, cats, crowd = [], [], [], []
        areas, bboxes = [], []
        status = np.zeros(n, dtype=np.int8)
        is_poly = np.zeros(n, dtype=bool)
        parts: list = []  # candidate polygon parts (lists of numbers), in file order
        part_ann: list = []  # annotation index of each candidate part
        rles: list = []
        rle_of = np.full(n, -1, dtype=np.int64)
        rle_area = np.zeros(n, dtype=np.float64)
        self.details: list[str] = []
        for i, ann in enumerate(anns):
            if not isinstance(ann, dict):
                ann = {}
            ann_id = ann.get("id")
            if ann_id is None:  # pycocotools indexes by id
                ann_id, next_id = next_id, next_id + 1
            ids.append(ann_id)
            row = row_of.get(ann.get("image_id"), -1)
            cat = ann.get("category_id")
            rows.append(row)
            cats.append(cat if cat in cat_ids else -1)
            crowd.append(1 if ann.get("iscrowd", 0) else 0)
            area = ann.get("area")
            areas.append(area if type(area) in (int, float) else math.nan)
            box = ann.get("bbox")
            bboxes.append(box if type(box) is list and len(box) == 4 else _NAN4)
            if row < 0:
                status[i] = _CODE["unknown image id"]
                continue
            if cat not in cat_ids:
                status[i] = _CODE["unknown category id"]
                if len(self.details) < 10:
                    self.details.append(f"annotation {ann_id} has category_id {cat!r}, not in categories")
                continue
            segm = ann.get("segmentation")
            if type(segm) is list:
                is_poly[i] = True
                any_candidate = False
                for part in segm:
                    # pycocotools needs x, y pairs and at least 3 points
                    if type(part) is list and len(part) >= 6 and not len(part) % 2:
                        parts.append(part)
                        part_ann.append(i)
                        any_candidate = True
                    else:
                        status[i] = _PARTIAL
                if not any_candidate:
                    status[i] = _CODE["broken polygon"]
                ann["segmentation"] = None  # the coordinates now live in `parts` only: freed once converted
            else:
                rle, a, reason = _clean_rle(segm, int(self.heights[row]), int(self.widths[row]))
                if reason:
                    status[i] = _CODE[reason]
                else:
                    rle_of[i], rle_area[i] = len(rles), a
                    rles.append(rle)
        coords, lengths, part_area, part_ok = _polygon_parts(parts)
        part_ann_a = np.asarray(part_ann, dtype=np.int64)
        poly_area = np.bincount(part_ann_a[part_ok], weights=part_area[part_ok], minlength=n)
        valid_parts = np.bincount(part_ann_a[part_ok], minlength=n)
        candidates = np.bincount(part_ann_a, minlength=n)
        live = status < _DROPPED
        status[live & is_poly & (candidates > valid_parts)] = _PARTIAL
        status[live & is_poly & (valid_parts == 0)] = _CODE["broken polygon"]
        live = status < _DROPPED
        status[live & is_poly & ~(poly_area > 0)] = _CODE["zero-area mask"]
        if not all(type(v) is int for v in ids):
            bad = next(v for v in ids if type(v) is not int)
            raise DataError(f"{self.ann_file}: annotation ids must be ints (found {bad!r})")
        ids_a = np.asarray(ids, dtype=np.int64)
        self.problems = _problems(status, ids_a)
        if self.problems:
            _warn_problems(self.ann_file, self.problems, int((status < _DROPPED).sum()), self.details)
        # keep the valid parts only, then the kept annotations grouped by image
        if not part_ok.all():
            coords = coords[np.repeat(part_ok, lengths)]
            lengths = lengths[part_ok]
        self.coords, self.coord_scale = _compact_coordinates(coords)
        self.part_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        kept_parts = np.bincount(part_ann_a[part_ok], minlength=n)
        part_end = np.cumsum(kept_parts)
        part_range = np.stack([part_end - kept_parts, part_end], 1)
        keep = np.flatnonzero(status < _DROPPED)
        rows_a = np.asarray(rows, dtype=np.int64)[keep]
        order = keep[np.argsort(rows_a, kind="stable")]
        self.ann_ids = ids_a[order]
        self.ann_category = np.asarray(cats, dtype=np.int64)[order]
        self.ann_iscrowd = np.asarray(crowd, dtype=np.uint8)[order]
        file_area = np.asarray(areas, dtype=np.float64)
        computed = np.where(is_poly, poly_area, rle_area)
        self.ann_area = np.where(np.isnan(file_area), computed, file_area)[order]
        self.ann_bbox = _float_boxes(bboxes)[order]
        self.part_range = part_range[order]
        old_rle = rle_of[order]
        self.rles = SerializedList(rles[k] for k in old_rle[old_rle >= 0])
        self.rle_index = np.full(len(order), -1, dtype=np.int64)
        self.rle_index[old_rle >= 0] = np.arange(int((old_rle >= 0).sum()))
        counts = np.bincount(np.asarray(rows, dtype=np.int64)[order], minlength=len(self.image_ids))
        self.ann_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    @classmethod
    def from_file(cls, ann_file: str) -> "CocoRecords":
        """Read, check and pack ``ann_file``; unusable annotations are dropped with one warning naming it."""
        records = cls(read_json(ann_file), ann_file)  # the parsed content is freed on return
        _release_freed_memory()
        return records

    # -- reading -------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.image_ids)

    def rows_of(self, image_ids) -> np.ndarray:
        """Rows of the given image ids (``(K,)`` int64); an unknown id raises ``KeyError``."""
        ids = np.asarray(image_ids, dtype=np.int64).reshape(-1)
        pos = np.searchsorted(self.image_ids, ids, sorter=self.by_id)
        pos = np.minimum(pos, max(len(self.by_id) - 1, 0))
        rows = self.by_id[pos] if len(self.by_id) else pos
        bad = ids[self.image_ids[rows] != ids] if len(self.by_id) else ids
        if len(bad):
            raise KeyError(f"image id(s) {bad[:10].tolist()} not in the annotations")
        return rows

    def image(self, row: int) -> dict:
        """``{"id", "file_name", "height", "width"}`` of image row ``row``."""
        return {"id": int(self.image_ids[row]), "file_name": self.file_names[row],
                "height": int(self.heights[row]), "width": int(self.widths[row])}

    def annotations(self, row: int, as_lists: bool = False) -> list[dict]:
        """The usable annotations of image row ``row``: ``id``, ``image_id``, ``category_id``, ``iscrowd``,
        ``area``, ``bbox`` (``[x, y, w, h]``, computed where the file has none) and ``segmentation`` (polygons
        as ``float64`` arrays, or as lists with ``as_lists``; RLE dicts as in the file)."""
        out = []
        image_id = int(self.image_ids[row])
        for a in range(int(self.ann_start[row]), int(self.ann_start[row + 1])):
            if self.rle_index[a] >= 0:
                segm = self.rles[int(self.rle_index[a])]
            else:
                p0, p1 = self.part_range[a]
                segm = [self.polygon_part(k) for k in range(p0, p1)]
                if as_lists:
                    segm = [p.tolist() for p in segm]
            box = self.ann_bbox[a]
            if np.isnan(box).any():
                box = _segm_box(segm, int(self.heights[row]), int(self.widths[row]))
            out.append({"id": int(self.ann_ids[a]), "image_id": image_id, "category_id": int(self.ann_category[a]),
                        "iscrowd": int(self.ann_iscrowd[a]), "area": float(self.ann_area[a]),
                        "bbox": [float(v) for v in box], "segmentation": segm})
        return out

    def polygon_part(self, k: int) -> np.ndarray:
        """Polygon part ``k``: ``(2 * V,)`` float64, x, y interleaved, exactly as parsed from the file."""
        part = self.coords[self.part_offsets[k]:self.part_offsets[k + 1]]
        return part / self.coord_scale if self.coord_scale != 1 else part.astype(np.float64)

    def original_id(self, row: int):
        """The file's own id of image row ``row``."""
        return self.original_ids[row] if self.original_ids is not None else int(self.image_ids[row])

    def to_coco_dict(self) -> dict:
        """COCO instance content (``images``, ``annotations``, ``categories``) of the usable annotations, with
        the internal int image ids: the ground truth for evaluation."""
        images = [self.image(r) for r in range(len(self))]
        annotations = [a for r in range(len(self)) for a in self.annotations(r, as_lists=True)]
        return {"images": images, "annotations": annotations, "categories": [dict(c) for c in self.categories]}

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays and buffers."""
        arrays = (self.image_ids, self.heights, self.widths, self.by_id, self.coords, self.part_offsets,
                  self.ann_ids, self.ann_category, self.ann_iscrowd, self.ann_area, self.ann_bbox, self.part_range,
                  self.rle_index, self.ann_start)
        return sum(a.nbytes for a in arrays) + self.file_names.nbytes + self.rles.nbytes + (
            self.original_ids.nbytes if self.original_ids is not None else 0)


def _compact_coordinates(coords: np.ndarray) -> tuple[np.ndarray, int]:
    """``(stored, scale)``: COCO coordinates have at most two decimals (``239.97``); those are kept exactly as
    ``int32`` hundredths (``round(v * 100) / 100`` gives back the very same double: both are the double nearest
    to the decimal), half the memory of ``float64``. Any other coordinate keeps the whole array ``float64``."""
    stored = np.empty(len(coords), dtype=np.int32)
    step = 1 << 22  # in slices: whole-array temporaries would add a gigabyte to the peak on train2017
    for start in range(0, len(coords), step):
        part = coords[start:start + step]
        hundredths = np.round(part * 100)
        if not (np.all(np.abs(hundredths) < 2**31 - 1) and np.array_equal(hundredths / 100, part)):
            return coords, 1
        stored[start:start + step] = hundredths
    return stored, 100


def _polygon_parts(parts: list) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Candidate parts -> (coords ``(V2,)`` float64, lengths ``(P,)``, shoelace areas ``(P,)``, usable ``(P,)``).

    One ``np.fromiter`` over every number (``parts`` is emptied after it); only if that fails (a non-number
    somewhere) are the parts converted one by one, and those that do not convert marked unusable.
    """
    lengths = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
    ok = np.ones(len(parts), dtype=bool)
    try:
        coords = np.fromiter(itertools.chain.from_iterable(parts), dtype=np.float64, count=int(lengths.sum()))
        parts.clear()  # free the parsed numbers (most of a COCO file's memory) before the arrays below
    except (TypeError, ValueError):
        arrays = []
        for k, part in enumerate(parts):
            try:
                xy = np.asarray(part, dtype=np.float64)
                if xy.ndim != 1:
                    raise ValueError
            except (TypeError, ValueError):
                xy = np.zeros(len(part))
                ok[k] = False
            arrays.append(xy)
        coords = np.concatenate(arrays) if arrays else np.zeros(0)
    if not len(lengths):
        return np.zeros(0), lengths, np.zeros(0), ok
    # Shoelace per part over all vertices at once: every part has an even length, so x and y stay interleaved.
    x, y = coords[0::2], coords[1::2]
    starts = np.concatenate([[0], np.cumsum(lengths // 2)[:-1]])
    ends = starts + lengths // 2
    with np.errstate(invalid="ignore", over="ignore"):
        cross = x[:-1] * y[1:] - y[:-1] * x[1:]  # vertex v with v + 1
        cross[ends[:-1] - 1] = 0.0  # not across a part boundary (and a bad number stays in its own part)
        inner = np.add.reduceat(cross, starts) if len(cross) else np.zeros(len(lengths))
        closing = x[ends - 1] * y[starts] - y[ends - 1] * x[starts]
        area = 0.5 * np.abs(inner + closing)
    ok &= np.isfinite(area)
    return coords, lengths, np.where(ok, area, 0.0), ok


def _clean_rle(segm, height: int, width: int) -> tuple[dict | None, float, str | None]:
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
        return ({"size": list(segm["size"]), "counts": counts}, area, None) if area > 0 else \
            (None, 0.0, "zero-area mask")
    return None, 0.0, "missing or invalid segmentation"


def _segm_box(segm, height: int, width: int) -> list[float]:
    if isinstance(segm, list):
        xy = np.concatenate([np.asarray(p, dtype=np.float64) for p in segm])
        x, y = xy[0::2], xy[1::2]
        return [float(x.min()), float(y.min()), float(x.max() - x.min()), float(y.max() - y.min())]
    rle = mask_utils.frPyObjects(segm, height, width) if isinstance(segm["counts"], list) else segm
    return [float(v) for v in mask_utils.toBbox(rle)]


def _float_boxes(boxes: list) -> np.ndarray:
    try:
        return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    except (TypeError, ValueError):
        out = np.full((len(boxes), 4), np.nan)
        for k, box in enumerate(boxes):
            try:
                out[k] = np.asarray(box, dtype=np.float64)
            except (TypeError, ValueError):
                pass
        return out


def _problems(status: np.ndarray, ids: np.ndarray) -> dict[str, list]:
    """``{reason: [ids]}``, reasons in the order their first annotation comes in the file."""
    codes = [int(c) for c in np.unique(status) if c != _OK]
    codes.sort(key=lambda c: int(np.argmax(status == c)))
    return {_REASONS[c]: ids[status == c].tolist() for c in codes}


def _check_structure(data, ann_file: str) -> None:
    if not isinstance(data, dict):
        raise DataError(f"{ann_file}: expected a JSON object with 'images', 'annotations' and 'categories'")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{ann_file}: missing or invalid '{key}' list")
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or not {"id", "file_name", "height", "width"} <= img.keys():
            missing = [k for k in ("id", "file_name", "height", "width") if not isinstance(img, dict) or k not in img]
            raise DataError(f"{ann_file}: images[{i}] lacks {missing}")
    for i, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or "id" not in cat:
            raise DataError(f"{ann_file}: categories[{i}] lacks 'id'")
    if data.get("annotations") is not None and not isinstance(data["annotations"], list):
        raise DataError(f"{ann_file}: invalid 'annotations' (not a list)")


def _int_image_ids(data: dict) -> list | None:
    """Renumber the images 1..N (file order) if any image id is not an int; annotations follow.

    Returns the file's ids in file order, or None when they are all ints already (then nothing changes).
    """
    ids = [img["id"] for img in data["images"]]
    if all(type(i) is int for i in ids):
        return None
    new_of: dict = {}
    for new, img in enumerate(data["images"], start=1):
        new_of.setdefault(_hashable(img["id"]), new)
        img["id"] = new_of[_hashable(img["id"])]
    for ann in data.get("annotations") or []:
        if isinstance(ann, dict) and _hashable(ann.get("image_id")) in new_of:
            ann["image_id"] = new_of[_hashable(ann["image_id"])]
        elif isinstance(ann, dict):
            ann["image_id"] = None  # reported as "unknown image id", never confused with a renumbered id
    return ids


def _hashable(value):
    return value if not isinstance(value, (list, dict)) else json.dumps(value)


def _warn_problems(ann_file: str, problems: dict[str, list], num_kept: int, details: list[str]) -> None:
    ids = [i for group in problems.values() for i in group]
    reasons = ", ".join(f"{len(v)} {k}" for k, v in problems.items())
    shown = ", ".join(str(i) for i in ids[:10]) + (", ..." if len(ids) > 10 else "")
    more = ("; " + "; ".join(details)) if details else ""
    warnings.warn(f"{ann_file}: {len(ids)} problem annotation(s) ({reasons}); unusable ones dropped, "
                  f"{num_kept} kept; annotation ids: {shown}{more}", stacklevel=2)


def _release_freed_memory() -> None:
    """Hand the parsed JSON's freed heap back to the system (glibc keeps it otherwise; the parent would hold
    the whole file's Python objects' worth of memory for nothing)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


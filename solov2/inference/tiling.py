"""Big images in tiles: predict overlapping tiles at full resolution, map the masks back, merge what the tile
borders cut.

An image much larger than the model's test scale is shrunk to it as a whole, and objects of a few dozen pixels
shrink below what the mask features resolve. Cut into tiles about the size of the test scale, each tile runs
at (nearly) its own resolution. Neighbouring tiles overlap by ``overlap`` pixels, so an object cut by one
tile's border is seen whole by the next one when it is smaller than the overlap, and in part by both
otherwise; the two detections of one object are merged into one instance whose mask is their union.

Two detections, from different tiles, are one object when they have the same class and their masks overlap
where both tiles see the image: the intersection of the two masks over the smaller of the two, both counted
inside the region the two tiles share, is at least ``min_overlap``. Inside that region both tiles saw the
same pixels, so one object gives nearly the same mask twice there, wherever the borders cut it; two objects
side by side share few pixels. Groups are transitive (an object on the corner of four tiles gives one
instance), and the merged instance keeps the best score.

Instances are held as crops (box + mask inside it) until the end: a 4000 x 3000 mask is 12 MB.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["tile_origins", "tile_boxes", "TiledInstance", "merge_tile_results", "instances_to_result"]


def tile_origins(length: int, tile: int, overlap: int) -> list[int]:
    """Starts of tiles of ``tile`` pixels covering ``0..length`` with at least ``overlap`` pixels shared by
    neighbours; the last tile ends at ``length`` (all tiles are whole). One tile at 0 if ``length <= tile``."""
    if tile <= 0 or not 0 <= overlap < tile:
        raise ValueError(f"tiles: need tile > 0 and 0 <= overlap < tile, got tile={tile}, overlap={overlap}")
    if length <= tile:
        return [0]
    count = int(np.ceil((length - overlap) / (tile - overlap)))
    # spread evenly: the overlaps are all >= overlap and differ by at most one pixel
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def tile_boxes(size: tuple[int, int], tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """``(x1, y1, x2, y2)`` of the tiles of an image of ``size`` ``(H, W)``, row by row."""
    h, w = size
    return [(x, y, min(x + tile, w), min(y + tile, h))
            for y in tile_origins(h, tile, overlap) for x in tile_origins(w, tile, overlap)]


@dataclass
class TiledInstance:
    """One instance in image coordinates: ``mask`` ``(y2 - y1, x2 - x1)`` bool inside ``box`` (x1, y1, x2, y2)."""

    box: tuple[int, int, int, int]
    mask: np.ndarray
    label: int
    score: float
    tile: int  # index of the tile it came from (of the best-scoring part, after merging)
    parts: int = 1  # detections merged into it


def _crop(mask: np.ndarray, dx: int, dy: int) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    if len(rows) == 0:
        return None
    y1, y2, x1, x2 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return (int(x1 + dx), int(y1 + dy), int(x2 + dx), int(y2 + dy)), mask[y1:y2, x1:x2]


def _inside(inst: TiledInstance, region: tuple[int, int, int, int]) -> np.ndarray:
    """The part of ``inst.mask`` inside ``region`` (image coordinates), as a full-box array (zero elsewhere)."""
    x1, y1, x2, y2 = inst.box
    rx1, ry1, rx2, ry2 = max(region[0], x1), max(region[1], y1), min(region[2], x2), min(region[3], y2)
    out = np.zeros_like(inst.mask)
    if rx2 > rx1 and ry2 > ry1:
        out[ry1 - y1: ry2 - y1, rx1 - x1: rx2 - x1] = inst.mask[ry1 - y1: ry2 - y1, rx1 - x1: rx2 - x1]
    return out


def _overlap(a: TiledInstance, b: TiledInstance, shared: tuple[int, int, int, int]) -> float:
    """Intersection over the smaller of ``a``'s and ``b``'s mask pixels, all counted inside ``shared``."""
    ma, mb = _inside(a, shared), _inside(b, shared)
    na, nb = int(ma.sum()), int(mb.sum())
    if na == 0 or nb == 0:
        return 0.0
    x1, y1 = max(a.box[0], b.box[0]), max(a.box[1], b.box[1])
    x2, y2 = min(a.box[2], b.box[2]), min(a.box[3], b.box[3])
    if x2 <= x1 or y2 <= y1:
        return 0.0
    inter = (ma[y1 - a.box[1]: y2 - a.box[1], x1 - a.box[0]: x2 - a.box[0]]
             & mb[y1 - b.box[1]: y2 - b.box[1], x1 - b.box[0]: x2 - b.box[0]]).sum()
    return float(inter) / min(na, nb)


def merge_tile_results(results: list[dict], tiles: list[tuple[int, int, int, int]],
                       min_overlap: float = 0.5, class_agnostic: bool = False) -> list[TiledInstance]:
    """Per-tile results -> the image's instances, those cut by tile borders merged (module docstring).

    Args:
        results: one result per tile, as the Predictor's: ``masks`` ``(N, th, tw)`` bool at the tile's size,
            ``labels`` ``(N,)``, ``scores`` ``(N,)``.
        tiles: each tile's ``(x1, y1, x2, y2)`` in the image (:func:`tile_boxes`).
        min_overlap: two detections of the same class from different tiles are one object when their masks'
            intersection over the smaller one, inside the region both tiles see, reaches it.
        class_agnostic: merge such detections whatever their classes (the merged instance takes the class of
            its best-scoring part): for a model that names a cut object differently in two tiles.
    Returns: instances, best score first.
    """
    found: list[TiledInstance] = []
    for t, (result, (tx, ty, _, _)) in enumerate(zip(results, tiles)):
        for mask, label, score in zip(result["masks"], result["labels"], result["scores"]):
            crop = _crop(np.asarray(mask, dtype=bool), tx, ty)
            if crop is not None:
                found.append(TiledInstance(crop[0], crop[1], int(label), float(score), t))
    if not found:
        return []
    boxes = np.array([i.box for i in found])
    labels = np.array([i.label for i in found])
    tile_of = np.array([i.tile for i in found])
    parent = list(range(len(found)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    # candidates: same class, different tiles, boxes that meet
    meet = ((boxes[:, None, 0] < boxes[None, :, 2]) & (boxes[None, :, 0] < boxes[:, None, 2])
            & (boxes[:, None, 1] < boxes[None, :, 3]) & (boxes[None, :, 1] < boxes[:, None, 3]))
    same_class = np.ones_like(meet) if class_agnostic else labels[:, None] == labels[None]
    candidates = np.argwhere(np.triu(meet & same_class & (tile_of[:, None] != tile_of[None]), 1))
    for i, j in candidates:
        a, b = tiles[tile_of[i]], tiles[tile_of[j]]
        shared = (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
        if shared[2] > shared[0] and shared[3] > shared[1] and _overlap(found[i], found[j], shared) >= min_overlap:
            parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(found)):
        groups.setdefault(root(i), []).append(i)
    merged = [_union([found[i] for i in members]) for members in groups.values()]
    return sorted(merged, key=lambda inst: -inst.score)


def _union(parts: list[TiledInstance]) -> TiledInstance:
    if len(parts) == 1:
        return parts[0]
    x1, y1 = min(p.box[0] for p in parts), min(p.box[1] for p in parts)
    x2, y2 = max(p.box[2] for p in parts), max(p.box[3] for p in parts)
    mask = np.zeros((y2 - y1, x2 - x1), dtype=bool)
    for p in parts:
        mask[p.box[1] - y1: p.box[3] - y1, p.box[0] - x1: p.box[2] - x1] |= p.mask
    best = max(parts, key=lambda p: p.score)
    return TiledInstance((x1, y1, x2, y2), mask, best.label, best.score, best.tile, sum(p.parts for p in parts))


def instances_to_result(instances: list[TiledInstance], size: tuple[int, int], class_names) -> dict:
    """Instances -> a Predictor result at the image's ``size`` ``(H, W)``: ``masks`` ``(N, H, W)`` bool,
    ``labels`` ``(N,)`` int64, ``scores`` ``(N,)`` float32, ``boxes`` ``(N, 4)`` float32, ``class_names``."""
    masks = np.zeros((len(instances), *size), dtype=bool)
    for k, inst in enumerate(instances):
        x1, y1, x2, y2 = inst.box
        masks[k, y1:y2, x1:x2] = inst.mask
    labels = np.array([i.label for i in instances], dtype=np.int64)
    return {"masks": masks, "labels": labels, "scores": np.array([i.score for i in instances], dtype=np.float32),
            "boxes": np.array([i.box for i in instances], dtype=np.float32).reshape(-1, 4),
            "class_names": [class_names[i] for i in labels]}

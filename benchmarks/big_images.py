"""Big images: objects found by tiled prediction vs the whole image resized to the test scale (issue 25).

    python benchmarks/big_images.py runs/demo/latest.pth --tile 160 --overlap 64

Draws one 4000 x 3000 image of the built-in shapes (the demo's five classes, painted as ``solov2.data.synthetic``
paints them) with ``--objects`` objects of 20-60 px (``sqrt(w * h)`` of the box), kept apart, on a textured
background; predicts it (a) resized to the model's test scale as a whole (``predictor(image)``) and (b) in
overlapping tiles at full resolution (:func:`solov2.inference.tiling.merge_tile_results`, what
``Predictor.predict_tiled`` and ``solov2 predict --tile`` run). Per case: instances, objects found (an
instance of mask IoU >= 0.5 with the object; with its class too), duplicates (further instances of IoU >= 0.5
with an object already found), and the same for the objects that a tile border cuts. Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import cv2
import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)

from solov2 import Predictor  # noqa: E402
from solov2.data.synthetic import _draw_shape, _paint, _texture  # noqa: E402  (the training data's drawing)
from solov2.inference.tiling import TiledInstance, merge_tile_results, tile_boxes  # noqa: E402


def big_image(size=(3000, 4000), objects=400, lo=20, hi=60, seed=0):
    """``(H, W, 3)`` uint8 and the objects as :class:`TiledInstance` crops (score 1, tile -1)."""
    rng = np.random.default_rng(seed)
    h, w = size
    image = _texture(rng, h, w, rng.uniform(0, 255, 3), contrast=rng.uniform(15, 70))
    taken = np.zeros(size, bool)
    truth = []
    while len(truth) < objects:
        label = int(rng.integers(5))
        patch = _draw_shape(rng, label, 100, 100).astype(bool)  # diameters 12..60 px
        ys, xs = np.nonzero(patch)
        if len(ys) == 0:
            continue
        y1, y2, x1, x2 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        if not lo <= math.sqrt((y2 - y1) * (x2 - x1)) <= hi:
            continue
        m = patch[y1:y2, x1:x2]
        oy, ox = int(rng.integers(0, h - m.shape[0])), int(rng.integers(0, w - m.shape[1]))
        region = (slice(max(oy - 8, 0), oy + m.shape[0] + 8), slice(max(ox - 8, 0), ox + m.shape[1] + 8))
        if taken[region].any():  # 8 px apart at least
            continue
        taken[oy: oy + m.shape[0], ox: ox + m.shape[1]] |= m
        _paint(rng, image[oy: oy + m.shape[0], ox: ox + m.shape[1]], m)
        truth.append(TiledInstance((ox, oy, ox + m.shape[1], oy + m.shape[0]), m, label, 1.0, -1))
    image = image + rng.normal(0, 4, (h, w, 1)).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8), truth


def iou(a: TiledInstance, b: TiledInstance) -> float:
    x1, y1 = max(a.box[0], b.box[0]), max(a.box[1], b.box[1])
    x2, y2 = min(a.box[2], b.box[2]), min(a.box[3], b.box[3])
    if x2 <= x1 or y2 <= y1:
        return 0.0
    inter = (a.mask[y1 - a.box[1]: y2 - a.box[1], x1 - a.box[0]: x2 - a.box[0]]
             & b.mask[y1 - b.box[1]: y2 - b.box[1], x1 - b.box[0]: x2 - b.box[0]]).sum()
    return float(inter) / (a.mask.sum() + b.mask.sum() - inter)


def score(found: list[TiledInstance], truth: list[TiledInstance], cut: set[int]) -> dict:
    """Greedy matching, best score first: found, found with the right class, duplicates (overall, at cut objects)."""
    boxes = np.array([t.box for t in truth])
    matched, with_class, duplicates, cut_dups = set(), set(), 0, 0
    for inst in found:
        near = np.nonzero((boxes[:, 0] < inst.box[2]) & (inst.box[0] < boxes[:, 2]) & (boxes[:, 1] < inst.box[3])
                          & (inst.box[1] < boxes[:, 3]))[0]
        hits = [k for k in near if iou(inst, truth[k]) >= 0.5]
        if not hits:
            continue
        k = hits[0]
        if k in matched:
            duplicates += 1
            cut_dups += k in cut
            continue
        matched.add(k)
        if inst.label == truth[k].label:
            with_class.add(k)
    return {"instances": len(found), "found": len(matched), "with_class": len(with_class), "duplicates": duplicates,
            "cut_found": len(matched & cut), "cut_duplicates": cut_dups}


def resized(predictor: Predictor, image: np.ndarray) -> list[TiledInstance]:
    """The whole image through the model at its test scale; masks kept at the network's size and read at the
    image's pixels by nearest neighbour (the (N, 3000, 4000) float masks the model would make need 48 MB each)."""
    h, w = image.shape[:2]
    test = predictor.model.transform.test_scale
    factor = min(max(test) / max(h, w), min(test) / min(h, w))  # the model's own resize rule (keep_ratio)
    sh, sw = round(h * factor), round(w * factor)
    small = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
    result = predictor(small)  # the resize the model would make, done once here
    out = []
    for mask, label, s in zip(result["masks"], result["labels"], result["scores"]):
        ys, xs = np.nonzero(mask)
        if len(ys) == 0:
            continue
        x1, x2 = int(xs.min() / factor), int(math.ceil((xs.max() + 1) / factor))
        y1, y2 = int(ys.min() / factor), int(math.ceil((ys.max() + 1) / factor))
        gy = np.minimum(((np.arange(y1, y2) + 0.5) * factor).astype(int), sh - 1)
        gx = np.minimum(((np.arange(x1, x2) + 0.5) * factor).astype(int), sw - 1)
        out.append(TiledInstance((x1, y1, x2, y2), mask[np.ix_(gy, gx)], int(label), float(s), 0))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--tile", type=int, default=160)
    p.add_argument("--overlap", type=int, default=64)
    p.add_argument("--objects", type=int, default=400)
    p.add_argument("--score-thr", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--large-scale", type=int, nargs=2, default=(1333, 1000), metavar=("LONG", "SHORT"),
                   help="a raised test scale to compare with")
    args = p.parse_args()
    image, truth = big_image(objects=args.objects, seed=args.seed)
    tiles = tile_boxes(image.shape[:2], args.tile, args.overlap)
    cut = {k for k, t in enumerate(truth) for x1, y1, x2, y2 in tiles
           if t.box[0] < x2 and x1 < t.box[2] and t.box[1] < y2 and y1 < t.box[3]
           and not (x1 <= t.box[0] and t.box[2] <= x2 and y1 <= t.box[1] and t.box[3] <= y2)}
    predictor = Predictor(args.checkpoint, score_thr=args.score_thr)
    rows = []
    for scale in (None, tuple(args.large_scale)):
        start = time.perf_counter()
        if scale is not None:
            predictor.model.transform.test_scale = scale
        name = "x".join(map(str, predictor.model.transform.test_scale))
        rows.append((f"whole image resized to {name}" + (" (test_scale raised)" if scale else " (the test scale)"),
                     score(resized(predictor, image), truth, cut), time.perf_counter() - start))
    predictor.model.transform.test_scale = tuple(predictor.cfg.model.transform.test_scale)
    start = time.perf_counter()
    results = predictor([np.ascontiguousarray(image[y1:y2, x1:x2]) for x1, y1, x2, y2 in tiles])
    merged = merge_tile_results(results, tiles)
    seconds = time.perf_counter() - start
    rows.append((f"{len(tiles)} tiles of {args.tile} px, overlap {args.overlap}, merged (same class)",
                 score(merged, truth, cut), seconds))
    rows.append(("the same tiles, merged whatever the class (class_agnostic=True)",
                 score(merge_tile_results(results, tiles, class_agnostic=True), truth, cut), seconds))
    start = time.perf_counter()
    oracle = merge_tile_results(truth_in_tiles(truth, tiles), tiles)
    rows.append(("the objects' true masks cut into the same tiles, merged (the merging alone)",
                 score(oracle, truth, cut), time.perf_counter() - start))
    unmerged = [TiledInstance(*_crop_of(m, x1, y1), int(lab), float(s), t)
                for t, (r, (x1, y1, _, _)) in enumerate(zip(results, tiles))
                for m, lab, s in zip(r["masks"], r["labels"], r["scores"]) if m.any()]
    unmerged.sort(key=lambda i: -i.score)
    rows.append(("the same tiles, not merged", score(unmerged, truth, cut), seconds))
    # duplicates the model makes inside one tile (Matrix NMS decays only masks of the same class): no merging
    # across tiles removes these
    within = sum(score(sorted((i for i in unmerged if i.tile == t), key=lambda i: -i.score), truth, cut)["duplicates"]
                 for t in range(len(tiles)))
    print(f"{len(truth)} objects of 20-60 px in a 4000x3000 image, {len(cut)} of them cut by a tile border; "
          f"score_thr {args.score_thr}; found: an instance of mask IoU >= 0.5\n")
    print("| prediction | instances | objects found | with the right class | duplicates | cut objects found | "
          "duplicates of cut objects | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r, s in rows:
        print(f"| {name} | {r['instances']} | {r['found']} ({r['found'] / len(truth):.0%}) | {r['with_class']} | "
              f"{r['duplicates']} | {r['cut_found']} of {len(cut)} | {r['cut_duplicates']} | {s:.0f} |")
    print(f"\nduplicates inside single tiles (the model's own, not a tiling matter): {within}")


def truth_in_tiles(truth: list[TiledInstance], tiles) -> list[dict]:
    """What a perfect model would give per tile: each object's mask cut to the tile (tile-sized masks)."""
    out = []
    for x1, y1, x2, y2 in tiles:
        masks, labels = [], []
        for t in truth:
            bx1, by1, bx2, by2 = max(t.box[0], x1), max(t.box[1], y1), min(t.box[2], x2), min(t.box[3], y2)
            if bx2 <= bx1 or by2 <= by1:
                continue
            m = np.zeros((y2 - y1, x2 - x1), bool)
            part = t.mask[by1 - t.box[1]: by2 - t.box[1], bx1 - t.box[0]: bx2 - t.box[0]]
            m[by1 - y1: by2 - y1, bx1 - x1: bx2 - x1] = part
            if m.any():
                masks.append(m)
                labels.append(t.label)
        out.append({"masks": np.array(masks, bool).reshape(-1, y2 - y1, x2 - x1), "labels": np.array(labels),
                    "scores": np.ones(len(labels))})
    return out


def _crop_of(mask: np.ndarray, dx: int, dy: int):
    ys, xs = np.nonzero(mask)
    y1, y2, x1, x2 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return (int(x1 + dx), int(y1 + dy), int(x2 + dx), int(y2 + dy)), mask[y1:y2, x1:x2]


if __name__ == "__main__":
    main()

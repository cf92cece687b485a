"""solov2.inference.tiling and Predictor.predict_tiled: tiles cover the image, objects cut by tile borders come
back as one instance each, with their whole mask."""
import cv2
import numpy as np
import pytest
import torch

from solov2.inference.predictor import Predictor
from solov2.inference.tiling import merge_tile_results, tile_boxes, tile_origins
from solov2.postprocess import masks_to_boxes


def test_tile_origins_cover_with_the_overlap():
    for length, tile, overlap in [(1600, 256, 64), (1200, 256, 64), (1000, 300, 0), (257, 256, 10)]:
        starts = tile_origins(length, tile, overlap)
        assert starts[0] == 0 and starts[-1] + tile == length
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))  # shared >= overlap
        assert len(starts) == int(np.ceil((length - overlap) / (tile - overlap)))  # no more tiles than needed
    assert tile_origins(100, 256, 64) == [0]
    assert tile_boxes((100, 600), 256, 64)[0] == (0, 0, 256, 100)  # a short image: tiles as high as it is
    with pytest.raises(ValueError, match="overlap < tile"):
        tile_origins(1000, 64, 64)


class OraclePredictor(Predictor):
    """A Predictor whose 'network' finds the bright objects of :func:`_big_image` in each tile it is given
    (connected components), so the test checks the tiling alone: cuts, mapping back and merging."""

    def __init__(self):  # no checkpoint: the attributes __call__ reads
        self.device, self.score_thr, self.batch_size, self.backend = "cpu", 0.3, 8, "torch"
        self.class_names, self.tiles_seen = ["object"], 0

    def _run(self, batch):
        out = []
        for image in batch:
            self.tiles_seen += 1
            count, comp = cv2.connectedComponents((image[0] > 150).numpy().astype(np.uint8), connectivity=4)
            masks = torch.from_numpy(comp[None] == np.arange(1, count)[:, None, None])
            out.append({"masks": masks, "labels": torch.zeros(len(masks), dtype=torch.int64),
                        "scores": torch.linspace(0.9, 0.5, len(masks))})
        return out


def _big_image(size=(1200, 1600), tile=256, overlap=64, seed=0):
    """Dim noise with discs and squares of 20-60 px, half of them centred on tile borders; ``(H, W, 3)`` uint8
    and the ``(N, H, W)`` bool masks."""
    rng = np.random.default_rng(seed)
    h, w = size
    image = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    xs = [x for b in tile_boxes(size, tile, overlap) for x in (b[0], b[2])]
    ys = [y for b in tile_boxes(size, tile, overlap) for y in (b[1], b[3])]
    masks, taken = [], np.zeros(size, bool)
    while len(masks) < 60:
        d = int(rng.integers(20, 61))
        on_border = len(masks) % 2 == 0
        cx = int(rng.choice(xs)) if on_border else int(rng.integers(d, w - d))
        cy = int(rng.choice(ys)) if on_border and rng.random() < 0.5 else int(rng.integers(d, h - d))
        cx, cy = min(max(cx, d), w - d), min(max(cy, d), h - d)
        m = np.zeros(size, np.uint8)
        if rng.random() < 0.5:
            cv2.circle(m, (cx, cy), d // 2, 1, -1)
        else:
            cv2.rectangle(m, (cx - d // 2, cy - d // 2), (cx + d // 2, cy + d // 2), 1, -1)
        m = m.astype(bool)
        if (cv2.dilate(m.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & taken).any():
            continue  # keep objects apart: the oracle tells them apart by connectivity
        taken |= m
        masks.append(m)
        image[m] = 220
    return image, np.stack(masks)


@pytest.mark.slow  # tiles a big image
def test_objects_cut_by_tile_borders_give_one_instance_each():
    image, truth = _big_image()
    predictor = OraclePredictor()
    result = predictor.predict_tiled(image, tile=256, overlap=64)
    tiles = tile_boxes(image.shape[:2], 256, 64)
    assert predictor.tiles_seen == len(tiles) == 8 * 6
    cut = sum(any(m[y1:y2, x1:x2].any() and not (m[y1:y2, x1:x2].sum() == m.sum()) for x1, y1, x2, y2 in tiles)
              for m in truth)
    assert cut >= 20  # many objects are cut by some tile's border
    assert len(result["masks"]) == len(truth)  # one instance per object: no duplicates, none lost
    assert result["masks"].shape == (len(truth), *image.shape[:2])
    for m in truth:  # each object's instance has its whole mask, the union of the tiles' parts
        ious = (result["masks"] & m).sum((1, 2)) / (result["masks"] | m).sum((1, 2))
        assert ious.max() == 1.0
    np.testing.assert_array_equal(result["boxes"], masks_to_boxes(torch.from_numpy(result["masks"])).numpy())
    assert result["class_names"] == ["object"] * len(truth) and np.all(np.diff(result["scores"]) <= 0)


def test_side_by_side_objects_and_other_classes_stay_apart():
    # two tiles sharing columns 50..100 of a 150-wide image
    tiles = [(0, 0, 100, 60), (50, 0, 150, 60)]
    left = np.zeros((60, 100), bool)
    left[10:30, 60:80] = True  # object A in the shared region, seen by tile 0
    right = np.zeros((60, 100), bool)
    right[10:30, 32:50] = True  # object B in tile 1, beside A (columns 82..100 of the image): no shared pixel
    other = np.zeros((60, 100), bool)
    other[10:30, 10:30] = True  # object A seen by tile 1 (columns 60..80), but called another class
    results = [{"masks": left[None], "labels": np.array([0]), "scores": np.array([0.9])},
               {"masks": np.stack([right, other]), "labels": np.array([0, 1]), "scores": np.array([0.8, 0.7])}]
    merged = merge_tile_results(results, tiles)
    assert len(merged) == 3
    agnostic = merge_tile_results(results, tiles, class_agnostic=True)  # A's two detections merge, B stays apart
    assert sorted((i.box, i.label, i.parts) for i in agnostic) == [((60, 10, 80, 30), 0, 2), ((82, 10, 100, 30), 0, 1)]
    same = [{"masks": left[None], "labels": np.array([0]), "scores": np.array([0.6])},
            {"masks": other[None], "labels": np.array([0]), "scores": np.array([0.7])}]
    (one,) = merge_tile_results(same, tiles)  # the same object, same class: merged, best score kept
    assert one.box == (60, 10, 80, 30) and one.score == 0.7 and one.parts == 2

"""CocoDataset on a tiny hand-written COCO file: every segmentation kind, crowd regions, broken annotations."""
import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from solov2.config import ConfigError
from solov2.data import CocoDataset, DataError, build_dataset, collate

H, W = 20, 30


def _rect(y0, y1, x0, x1):
    m = np.zeros((H, W), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def _uncompressed_rle(mask):
    # column-major run lengths, starting with a run of zeros
    flat = mask.T.reshape(-1).astype(np.uint8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    return {"size": [H, W], "counts": ([0] + runs) if flat[0] else runs}


def _compressed_rle(mask):
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


RECT_POLY = _rect(3, 8, 2, 10)  # what pycocotools rasterizes for the polygon below
RLE_MASK = _rect(10, 18, 5, 9) | _rect(12, 14, 20, 28)  # two parts
CRLE_MASK = _rect(1, 6, 15, 25)
CROWD_MASK = _rect(14, 20, 0, 3)


def _annotations():
    ann = lambda i, img, cat, segm, **kw: {"id": i, "image_id": img, "category_id": cat, "segmentation": segm,
                                             "iscrowd": 0, **kw}
    return [
        ann(1, 1, 5, [[2, 3, 10, 3, 10, 8, 2, 8]]),
        ann(2, 1, 3, _uncompressed_rle(RLE_MASK)),
        ann(3, 1, 10, _compressed_rle(CRLE_MASK)),
        ann(4, 1, 3, _uncompressed_rle(CROWD_MASK), iscrowd=1),
        ann(5, 1, 5, [[1, 1, 5, 1, 5, 5, 1]]),  # odd number of coordinates
        ann(6, 1, 99, [[2, 3, 10, 3, 10, 8, 2, 8]]),  # unknown category
        ann(7, 1, 5, [[1, 1, 5, 5]]),  # two points only
        ann(8, 1, 5, [[1, 1, 5, 5, 9, 9]]),  # collinear: zero area
        ann(9, 2, 3, _uncompressed_rle(CROWD_MASK), iscrowd=1),  # image 2 has a crowd region only
        ann(10, 3, 5, [[2, 3, 10, 3, 10, 8, 2, 8]]),
    ]


@pytest.fixture
def coco_dir(tmp_path):
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    rng = np.random.default_rng(0)
    pixels = {}
    for name in ("a.png", "b.png"):
        pixels[name] = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        Image.fromarray(pixels[name]).save(img_dir / name)
    (img_dir / "c.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    data = {
        "images": [{"id": 1, "file_name": "a.png", "height": H, "width": W},
                   {"id": 2, "file_name": "b.png", "height": H, "width": W},
                   {"id": 3, "file_name": "c.jpg", "height": H, "width": W}],
        "annotations": _annotations(),
        # deliberately not in id order: labels follow the sorted ids
        "categories": [{"id": 10, "name": "ten"}, {"id": 3, "name": "three"}, {"id": 5, "name": "five"}],
    }
    ann_file = tmp_path / "ann.json"
    ann_file.write_text(json.dumps(data))
    return str(ann_file), str(img_dir), pixels


def _load(ann_file, img_dir, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = CocoDataset(ann_file, img_dir, **kw)
    return ds, [str(w.message) for w in caught]


def test_masks_labels_and_attributes(coco_dir):
    ann_file, img_dir, pixels = coco_dir
    ds, _ = _load(ann_file, img_dir)
    assert ds.cat_ids == [3, 5, 10]
    assert ds.CLASSES == ("three", "five", "ten")
    assert ds.img_ids == [1, 3]  # image 2 has no non-crowd instance
    image, target = ds[0]
    assert image.dtype == torch.uint8 and image.shape == (3, H, W)
    assert torch.equal(image, torch.from_numpy(pixels["a.png"]).permute(2, 0, 1))
    assert target["labels"].dtype == torch.int64
    assert target["labels"].tolist() == [1, 0, 2]  # ids 5, 3, 10; the crowd region and broken ones are gone
    assert target["masks"].dtype == torch.bool and target["masks"].shape == (3, H, W)
    for got, want in zip(target["masks"], [RECT_POLY, RLE_MASK, CRLE_MASK]):
        assert np.array_equal(got.numpy(), want)
    assert (target["image_id"], target["file_name"], target["orig_size"]) == (1, "a.png", (H, W))


def test_broken_annotations_are_reported_once_and_dropped(coco_dir):
    ann_file, img_dir, _ = coco_dir
    ds, messages = _load(ann_file, img_dir)
    assert len(messages) == 1
    msg = messages[0]
    assert "ann.json" in msg and "4 problem annotation(s)" in msg and "\n" not in msg
    for ann_id in ("5", "6", "7", "8"):
        assert ann_id in msg.split("annotation ids:")[1]
    assert sorted(ds.coco.anns) == [1, 2, 3, 4, 9, 10]  # the ground truth for evaluation drops them too
    assert ds.coco.anns[4]["iscrowd"] == 1


def test_without_filter_keeps_every_image(coco_dir):
    ann_file, img_dir, _ = coco_dir
    ds, _ = _load(ann_file, img_dir, filter_empty_gt=False)
    assert ds.img_ids == [1, 2, 3]
    image, target = ds[1]
    assert target["masks"].shape == (0, H, W) and target["labels"].shape == (0,)


def test_flip(coco_dir):
    ann_file, img_dir, pixels = coco_dir
    ds, _ = _load(ann_file, img_dir, flip_prob=1.0)
    image, target = ds[0]
    assert torch.equal(image, torch.from_numpy(pixels["a.png"][:, ::-1].copy()).permute(2, 0, 1))
    assert np.array_equal(target["masks"][0].numpy(), RECT_POLY[:, ::-1])


def test_corrupt_image_raises_data_error_naming_the_file(coco_dir):
    ann_file, img_dir, _ = coco_dir
    ds, _ = _load(ann_file, img_dir)
    with pytest.raises(DataError, match=r"c\.jpg") as info:
        ds[1]
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)


def test_skip_bad_images_warns_once_and_returns_the_next_image(coco_dir):
    ann_file, img_dir, _ = coco_dir
    ds, _ = _load(ann_file, img_dir, skip_bad_images=True)
    with pytest.warns(UserWarning, match=r"c\.jpg"):
        image, target = ds[1]
    assert target["image_id"] == 1  # wrapped around to the first image
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second visit must not warn again
        assert ds[1][1]["image_id"] == 1


def test_missing_paths_and_invalid_json(tmp_path, coco_dir):
    ann_file, img_dir, _ = coco_dir
    with pytest.raises(FileNotFoundError, match="nope.json"):
        CocoDataset(str(tmp_path / "nope.json"), img_dir)
    with pytest.raises(FileNotFoundError, match="no_images"):
        CocoDataset(ann_file, str(tmp_path / "no_images"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [')
    with pytest.raises(DataError, match="bad.json") as info:
        CocoDataset(str(bad), img_dir)
    assert "\n" not in str(info.value)
    no_cats = tmp_path / "no_cats.json"
    no_cats.write_text('{"images": [], "annotations": []}')
    with pytest.raises(DataError, match="categories"):
        CocoDataset(str(no_cats), img_dir)


def test_build_dataset_and_loader(coco_dir):
    ann_file, img_dir, _ = coco_dir
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = build_dataset({"type": "CocoDataset", "ann_file": ann_file, "img_prefix": img_dir},
                           default_args={"filter_empty_gt": False, "not_a_coco_argument": 1})
    assert len(ds) == 3
    with pytest.raises(ConfigError, match="pipeline"):
        build_dataset({"type": "CocoDataset", "ann_file": ann_file, "img_prefix": img_dir, "pipeline": []})
    with pytest.raises(ConfigError, match="FooDataset"):
        build_dataset({"type": "FooDataset"})
    with pytest.raises(ConfigError, match="img_prefix"):
        build_dataset({"type": "CocoDataset", "ann_file": ann_file})
    synth = build_dataset({"type": "SyntheticShapes", "num_images": 5, "image_size": 64})
    images, targets = collate([synth[0], synth[1]])
    assert len(images) == 2 and targets[1]["image_id"] == 2

"""The built-in shapes data set: determinism, exact visible masks, and the COCO file round trip."""
import json

import cv2
import numpy as np
import torch

from solov2.data import CocoDataset, SyntheticShapes, write_shapes_coco
from solov2.data.coco import decode_segmentations
from solov2.data.synthetic import MIN_VISIBLE


def test_item_format_and_attributes():
    ds = SyntheticShapes(num_images=4, seed=0, image_size=(96, 128))
    assert len(ds) == 4 and ds.img_ids == [1, 2, 3, 4]
    assert ds.cat_ids == list(range(1, len(ds.CLASSES) + 1)) and 4 <= len(ds.CLASSES) <= 6
    image, target = ds[2]
    assert image.dtype == torch.uint8 and image.shape == (3, 96, 128)
    masks, labels = target["masks"], target["labels"]
    assert masks.dtype == torch.bool and masks.shape[1:] == (96, 128)
    assert labels.dtype == torch.int64 and labels.shape == (masks.shape[0],)
    assert 1 <= len(labels) <= 6 and int(labels.min()) >= 0 and int(labels.max()) < len(ds.CLASSES)
    assert (target["image_id"], target["file_name"], target["orig_size"]) == (3, "000002.png", (96, 128))


def test_deterministic_per_seed_and_index():
    a = SyntheticShapes(num_images=10, seed=7, image_size=64)
    b = SyntheticShapes(num_images=3, seed=7, image_size=64)  # image i depends only on seed and i
    for i in (0, 2):
        (ia, ta), (ib, tb) = a[i], b[i]
        assert torch.equal(ia, ib) and torch.equal(ta["masks"], tb["masks"]) and torch.equal(ta["labels"], tb["labels"])
    c = SyntheticShapes(num_images=3, seed=8, image_size=64)
    assert not torch.equal(a[0][0], c[0][0])
    assert not torch.equal(a[0][0], a[1][0])


def test_masks_are_disjoint_visible_and_not_tiny():
    ds = SyntheticShapes(num_images=40, seed=0, image_size=128)
    counts, labels_seen = [], set()
    for i in range(len(ds)):
        image, masks, labels = ds.render(i)
        counts.append(len(labels))
        labels_seen.update(labels.tolist())
        assert masks.sum(0).max() <= 1  # each pixel belongs to at most one (the visible) instance
        assert (masks.sum((1, 2)) >= MIN_VISIBLE).all()
        # a mask is exactly its shape's visible pixels: each instance's pixels share one texture, so the
        # colour varies more across a mask's border than inside it
        for m in masks:
            inside = image[m].astype(np.float64)
            assert inside.std(0).max() < 80
    assert set(labels_seen) == set(range(len(ds.CLASSES)))  # every class occurs
    assert min(counts) >= 1 and max(counts) <= 6 and len(set(counts)) >= 3


def test_occlusion_happens():
    # Every shape is drawn in one piece, so a mask in several pieces was cut by a later shape.
    ds = SyntheticShapes(num_images=30, seed=0, image_size=128)
    occluded = 0
    for i in range(len(ds)):
        _, masks, _ = ds.render(i)
        for m in masks:
            n, _ = cv2.connectedComponents(m.astype(np.uint8))
            occluded += n > 2  # more than one piece (plus background)
    assert occluded > 0


def test_coco_attribute_matches_items():
    ds = SyntheticShapes(num_images=3, seed=1, image_size=64)
    coco = ds.coco
    assert sorted(coco.getImgIds()) == [1, 2, 3]
    assert sorted(coco.getCatIds()) == ds.cat_ids
    _, target = ds[1]
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[2]))
    decoded = decode_segmentations([a["segmentation"] for a in anns], 64, 64)
    assert torch.equal(decoded, target["masks"])
    assert [a["category_id"] - 1 for a in anns] == target["labels"].tolist()


def test_write_shapes_coco_round_trip(tmp_path):
    ann_file = write_shapes_coco(str(tmp_path / "shapes"), num_images=4, seed=1, image_size=(64, 80))
    assert ann_file == str(tmp_path / "shapes" / "annotations.json")
    data = json.loads(open(ann_file).read())
    assert len(data["images"]) == 4 and all(isinstance(a["segmentation"]["counts"], str) for a in data["annotations"])
    coco_ds = CocoDataset(ann_file, str(tmp_path / "shapes" / "images"), filter_empty_gt=False)
    synth = SyntheticShapes(num_images=4, seed=1, image_size=(64, 80))
    assert coco_ds.CLASSES == synth.CLASSES and coco_ds.cat_ids == synth.cat_ids and len(coco_ds) == 4
    for i in range(4):
        (ia, ta), (ib, tb) = coco_ds[i], synth[i]
        assert torch.equal(ia, ib)  # PNG is lossless
        assert torch.equal(ta["masks"], tb["masks"]) and torch.equal(ta["labels"], tb["labels"])
        assert (ta["image_id"], ta["file_name"]) == (tb["image_id"], tb["file_name"])


def test_other_classes_and_object_sizes_make_a_second_data_set(tmp_path):
    ds = SyntheticShapes(num_images=30, seed=3, image_size=128, classes=("ring", "star"), object_size=(8, 20))
    assert ds.CLASSES == ("ring", "star") and ds.cat_ids == [1, 2]
    sizes, labels = [], []
    for i in range(len(ds)):
        _, masks, lab = ds.render(i)
        labels += lab.tolist()
        for m in masks:
            ys, xs = np.nonzero(m)
            sizes.append(max(np.ptp(xs), np.ptp(ys)) + 1)
    assert set(labels) == {0, 1}
    assert max(sizes) <= 22 and min(sizes) >= 4  # a diameter of 8..20 px (a polygon's extent may round up)
    data = json.load(open(write_shapes_coco(str(tmp_path), 3, seed=3, image_size=128, classes=("ring", "star"))))
    assert [c["name"] for c in data["categories"]] == ["ring", "star"]
    # the default set is unchanged by the new options: image i still depends only on (seed, i)
    default = SyntheticShapes(num_images=2, seed=3, image_size=128)
    same = SyntheticShapes(num_images=2, seed=3, image_size=128, classes=default.CLASSES, object_size=None)
    assert np.array_equal(default.render(1)[0], same.render(1)[0])


def test_make_shapes_refuses_unknown_classes_and_sizes_in_one_line(tmp_path, capsys):
    from solov2.cli import main
    for args in (["--classes", "hexagon"], ["--object-size", "30", "10"], ["--object-size", "4", "500"]):
        assert main(["make-shapes", str(tmp_path / "out"), "--num-images", "1", "--image-size", "64", *args]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "make-shapes" in err

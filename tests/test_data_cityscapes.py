"""CityscapesDataset and cityscapes_to_coco on the tiny tree of tests/cityscapes_fixture.py."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cityscapes_fixture import EXPECTED, H, W
from cityscapesscripts.preparation.json2instanceImg import createInstanceImage
from pycocotools.coco import COCO

from solov2.data.cityscapes import CityscapesDataset, cityscapes_to_coco, load_annotation

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools
CLASSES = ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")


def _stem(file_name: str) -> str:
    return Path(file_name).name[: -len("_leftImg8bit.png")]


def _assert_matches_expected(target: dict) -> None:
    expected = EXPECTED[_stem(target["file_name"])]
    assert target["masks"].dtype == torch.bool and target["labels"].dtype == torch.int64
    assert tuple(target["masks"].shape) == (len(expected), H, W)
    assert [CLASSES[i] for i in target["labels"].tolist()] == [name for name, _ in expected]
    for mask, (name, expected_mask) in zip(target["masks"], expected):
        assert np.array_equal(mask.numpy(), expected_mask), name


def test_classes_and_category_ids(tiny_cityscapes):
    ds = CityscapesDataset(tiny_cityscapes, "train")
    assert ds.CLASSES == CLASSES
    assert ds.cat_ids == [24, 25, 26, 27, 28, 31, 32, 33]  # label -> Cityscapes label id
    assert ds.root == tiny_cityscapes and ds.split == "train"


def test_train_items_are_the_hand_computed_visible_masks(tiny_cityscapes):
    ds = CityscapesDataset(tiny_cityscapes, "train")
    assert len(ds) == 2  # aachen_000002 has no instance and is filtered by default
    for i, stem in enumerate(["aachen_000000_000019", "aachen_000001_000019"]):
        image, target = ds[i]
        assert image.dtype == torch.uint8 and tuple(image.shape) == (3, H, W)
        assert target["file_name"] == f"leftImg8bit/train/aachen/{stem}_leftImg8bit.png"
        assert target["image_id"] == i + 1 and target["orig_size"] == (H, W)
        _assert_matches_expected(target)
        masks = target["masks"].int()
        assert masks.sum(0).max() <= 1  # occlusion leaves the masks disjoint


def test_keep_empty_images_and_val(tiny_cityscapes):
    train = CityscapesDataset(tiny_cityscapes, "train", filter_empty_gt=False)
    assert len(train) == 3
    _, target = train[2]
    assert tuple(target["masks"].shape) == (0, H, W) and tuple(target["labels"].shape) == (0,)
    val = CityscapesDataset(tiny_cityscapes, "val", filter_empty_gt=False)
    assert [_stem(val[i][1]["file_name"]) for i in range(len(val))] == ["frankfurt_000000_000294",
                                                                        "frankfurt_000001_000538"]
    for i in range(len(val)):
        _assert_matches_expected(val[i][1])


@pytest.mark.parametrize("split", ["train", "val"])
def test_masks_agree_with_the_official_instance_image(tiny_cityscapes, split):
    ds = CityscapesDataset(tiny_cityscapes, split)
    for i, info in enumerate(ds.images):
        ids = np.asarray(createInstanceImage(load_annotation(tiny_cityscapes / info.ann_file), "ids"))
        official = {(int(v) // 1000, np.asarray(ids == v).tobytes()) for v in np.unique(ids)
                    if v >= 1000 and v // 1000 in ds.cat_ids}
        _, target = ds[i]
        ours = {(ds.cat_ids[label], mask.numpy().tobytes())
                for mask, label in zip(target["masks"], target["labels"].tolist())}
        assert ours == official


def test_horizontal_flip(tiny_cityscapes):
    image, target = CityscapesDataset(tiny_cityscapes, "train")[0]
    flipped_image, flipped = CityscapesDataset(tiny_cityscapes, "train", flip_prob=1.0)[0]
    assert torch.equal(flipped_image, image.flip(-1))
    assert torch.equal(flipped["masks"], target["masks"].flip(-1))
    assert torch.equal(flipped["labels"], target["labels"]) and flipped["orig_size"] == (H, W)


def test_missing_layout_is_named(tmp_path, tiny_cityscapes):
    with pytest.raises(ValueError, match=r"missing leftImg8bit/train"):
        CityscapesDataset(tmp_path / "nowhere", "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError) as error:
        CityscapesDataset(tmp_path / "empty", "val")
    assert str(error.value) == f"{tmp_path / 'empty'}: missing leftImg8bit/val"
    shutil.rmtree(tiny_cityscapes / "gtFine" / "val")
    with pytest.raises(ValueError, match=r": missing gtFine/val$"):
        CityscapesDataset(tiny_cityscapes, "val")
    (tiny_cityscapes / "gtFine/train/aachen/aachen_000001_000019_gtFine_polygons.json").unlink()
    with pytest.raises(ValueError, match=r"missing gtFine/train/aachen/aachen_000001_000019_gtFine_polygons.json"):
        CityscapesDataset(tiny_cityscapes, "train")
    with pytest.raises(ValueError, match="unknown Cityscapes split"):
        CityscapesDataset(tiny_cityscapes, "training")


def test_broken_polygon_json_names_the_file(tiny_cityscapes):
    bad = tiny_cityscapes / "gtFine/val/frankfurt/frankfurt_000001_000538_gtFine_polygons.json"
    bad.write_text('{"imgHeight": 64, "imgWidth": 128, "objects": [')
    with pytest.raises(ValueError, match="frankfurt_000001_000538_gtFine_polygons.json") as error:
        CityscapesDataset(tiny_cityscapes, "val", filter_empty_gt=False)
    assert "\n" not in str(error.value)


def test_unreadable_image(tiny_cityscapes):
    bad = tiny_cityscapes / "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png"
    bad.write_bytes(b"not a png")
    ds = CityscapesDataset(tiny_cityscapes, "train")
    with pytest.raises(ValueError, match="aachen_000000_000019_leftImg8bit.png: cannot read image"):
        ds[0]
    skipping = CityscapesDataset(tiny_cityscapes, "train", skip_bad_images=True)
    with pytest.warns(UserWarning, match="aachen_000000_000019_leftImg8bit.png"):
        _, target = skipping[0]
    assert target["image_id"] == 2
    _assert_matches_expected(target)


def test_test_split_without_labels(tiny_cityscapes):
    test_dir = tiny_cityscapes / "leftImg8bit/test/berlin"
    test_dir.mkdir(parents=True)
    shutil.copy(tiny_cityscapes / "leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png",
                test_dir / "berlin_000000_000019_leftImg8bit.png")
    ds = CityscapesDataset(tiny_cityscapes, "test")  # no gtFine/test: every image kept, empty targets
    image, target = ds[0]
    assert len(ds) == 1 and tuple(image.shape) == (3, H, W) and tuple(target["masks"].shape) == (0, H, W)


def test_coco_ground_truth_object(tiny_cityscapes):
    ds = CityscapesDataset(tiny_cityscapes, "val", filter_empty_gt=False)
    coco = ds.coco
    assert sorted(coco.getImgIds()) == [1, 2]
    assert sorted(coco.getCatIds()) == ds.cat_ids
    for i in range(len(ds)):
        _, target = ds[i]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[target["image_id"]]))
        assert coco.imgs[target["image_id"]]["file_name"] == target["file_name"]
        assert [a["category_id"] for a in anns] == [ds.cat_ids[j] for j in target["labels"].tolist()]
        for ann, mask in zip(anns, target["masks"]):
            assert np.array_equal(coco.annToMask(ann).astype(bool), mask.numpy())
            assert ann["area"] == mask.sum().item() and ann["iscrowd"] == 0


def test_cityscapes_to_coco_round_trip(tiny_cityscapes, tmp_path):
    out = tmp_path / "annotations" / "instances_train.json"
    cityscapes_to_coco(tiny_cityscapes, out, split="train")
    json.loads(out.read_text())  # plain JSON
    coco = COCO(str(out))
    ds = CityscapesDataset(tiny_cityscapes, "train", filter_empty_gt=False)
    assert sorted(coco.getImgIds()) == [1, 2, 3]
    assert {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())} == dict(zip(ds.cat_ids, CLASSES))
    for i in range(len(ds)):
        _, target = ds[i]
        image = coco.imgs[target["image_id"]]
        assert "leftImg8bit/train/" + image["file_name"] == target["file_name"]
        assert (tiny_cityscapes / "leftImg8bit/train" / image["file_name"]).is_file()
        assert (image["height"], image["width"]) == (H, W)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
        assert len(anns) == len(target["labels"])
        for ann, mask, label in zip(anns, target["masks"], target["labels"].tolist()):
            assert ann["category_id"] == ds.cat_ids[label]
            assert np.array_equal(coco.annToMask(ann).astype(bool), mask.numpy())


def test_coco_style_evaluation_of_perfect_predictions(tiny_cityscapes):
    from solov2.evaluation.coco import evaluate_coco, results_to_coco

    ds = CityscapesDataset(tiny_cityscapes, "val", filter_empty_gt=False)
    detections = []
    for i in range(len(ds)):
        _, target = ds[i]
        result = {"masks": target["masks"], "labels": target["labels"],
                  "scores": torch.ones(len(target["labels"]))}
        detections += results_to_coco(result, target["image_id"], ds.cat_ids)
    assert evaluate_coco(ds.coco, detections, log=lambda _: None)["mask_AP"] == pytest.approx(1.0)

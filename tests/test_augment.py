"""Copy-paste and large-scale jitter (solov2/data/augment.py) and their data set wrapper."""
import logging

import numpy as np
import pytest
import torch

from solov2.config import load_config
from solov2.data import SyntheticShapes, build_dataset
from solov2.data.augment import PAD_VALUE, AugmentedDataset, copy_paste, large_scale_jitter, resize_crop
from solov2.engine.rng import SeededSamples
from solov2.errors import ConfigError


def _masks(h, w, *boxes):
    """Boolean masks ``(len(boxes), h, w)``, one filled rectangle (y0, y1, x0, x1), ends exclusive, each."""
    out = torch.zeros((len(boxes), h, w), dtype=torch.bool)
    for m, (y0, y1, x0, x1) in zip(out, boxes):
        m[y0:y1, x0:x1] = True
    return out


def _item(h, w, colour, boxes, labels):
    image = torch.tensor(colour, dtype=torch.uint8).view(3, 1, 1).repeat(1, h, w)
    return image, {"masks": _masks(h, w, *boxes), "labels": torch.tensor(labels, dtype=torch.int64),
                   "image_id": 3, "orig_size": (h, w)}


def test_pasted_masks_cut_the_masks_under_them():
    # A: rows 0-4 but not D (35 px); B: a 2x2 corner (4 px: fewer than min_visible, but untouched);
    # C: rows 6-7, cols 0-3 (8 px); D: rows 2-4, cols 5-9 (15 px).
    image, target = _item(10, 10, (10, 20, 30), [(0, 5, 0, 10), (8, 10, 8, 10), (6, 8, 0, 4), (2, 5, 5, 10)],
                          [0, 1, 2, 3])
    target["masks"][0, 2:5, 5:10] = False
    # The source's one instance (label 7): rows 3-7, cols 0-4 and rows 3-4, cols 5-9 (35 px). It cuts 10 px of
    # A (25 left: kept), all of C (dropped) and 10 px of D (5 left, fewer than min_visible=16: dropped).
    src_image, src_target = _item(10, 10, (200, 100, 50), [(3, 8, 0, 5)], [7])
    src_target["masks"][0, 3:5, 5:10] = True
    out, result = copy_paste(image, target, src_image, src_target, np.random.default_rng(0), min_visible=16)
    assert result["labels"].tolist() == [0, 1, 7]  # the kept ones in order, the pasted one last
    a, b, pasted = result["masks"]
    assert int(pasted.sum()) == 35 and torch.equal(pasted, src_target["masks"][0])
    assert int(a.sum()) == 25 and not (a & pasted).any() and torch.equal(a, target["masks"][0] & ~pasted)
    assert torch.equal(b, target["masks"][1])
    assert result["image_id"] == 3  # the rest of the target is carried
    assert (out[:, pasted] == torch.tensor([200, 100, 50]).view(3, 1)).all()
    assert (out[:, ~pasted] == torch.tensor([10, 20, 30]).view(3, 1)).all()
    # With min_visible=1, D's 5 remaining pixels are an instance; C, covered completely, still is not.
    _, result = copy_paste(image, target, src_image, src_target, np.random.default_rng(0), min_visible=1)
    assert result["labels"].tolist() == [0, 1, 3, 7] and int(result["masks"][2].sum()) == 5


def test_copy_paste_with_empty_images():
    empty, empty_target = _item(8, 8, (0, 0, 0), [], [])
    full, full_target = _item(8, 8, (9, 9, 9), [(0, 2, 0, 2), (4, 8, 4, 8)], [1, 2])
    rng = np.random.default_rng(1)
    # An image without instances receives the pasted ones (a random non-empty subset, with their labels).
    out, result = copy_paste(empty, empty_target, full, full_target, rng)
    assert 1 <= len(result["masks"]) <= 2 and set(result["labels"].tolist()) <= {1, 2}
    for m, label in zip(result["masks"], result["labels"]):
        assert torch.equal(m, full_target["masks"][label - 1])
        assert (out[:, m] == 9).all()
    # A source without instances changes nothing.
    out, result = copy_paste(full, full_target, empty, empty_target, rng)
    assert out is full and result is full_target


def test_copy_paste_subsets_and_resizes_the_source():
    image, target = _item(20, 20, (0, 0, 0), [(12, 16, 0, 4)], [0])  # under none of the pasted ones
    src_image, src_target = _item(10, 10, (255, 255, 255), [(5, 10, 5, 10), (0, 2, 8, 10), (0, 1, 0, 1)], [4, 5, 6])
    counts = set()
    for seed in range(20):
        out, result = copy_paste(image, target, src_image, src_target, np.random.default_rng(seed))
        assert result["masks"].shape[1:] == (20, 20) and out.shape == (3, 20, 20)
        assert result["labels"][0] == 0 and len(result["labels"]) == len(result["masks"])
        counts.add(len(result["labels"]) - 1)
        if 4 in result["labels"]:  # rows/cols 5-9 of 10x10, twice as large at 20x20
            assert torch.equal(result["masks"][result["labels"].tolist().index(4)], _masks(20, 20, (10, 20, 10, 20))[0])
    assert counts == {1, 2, 3}  # one, two or all three pasted


def test_resize_crop_moves_masks_with_the_image():
    image, target = _item(20, 20, (50, 60, 70), [(4, 12, 8, 16), (0, 2, 0, 2)], [1, 2])
    # Half size, padded to 16x16: the rectangle lands at half its coordinates, the rest is padding.
    out, result = resize_crop(image, target, 0.5, (16, 16), (0, 0))
    assert out.shape == (3, 16, 16) and result["orig_size"] == (16, 16)
    assert torch.equal(result["masks"][0], _masks(16, 16, (2, 6, 4, 8))[0])
    assert (out[:, :10, :10] == torch.tensor([50, 60, 70]).view(3, 1, 1)).all()
    assert (out[:, 10:, :] == torch.tensor(PAD_VALUE).view(3, 1, 1)).all()
    assert (out[:, :, 10:] == torch.tensor(PAD_VALUE).view(3, 1, 1)).all()
    assert result["labels"].tolist() == [1, 2]
    # Twice the size, window from (6, 6): the rectangle is at 2x its coordinates minus the offset, and the
    # small instance in the corner (rows/cols 0-3 once resized) is outside the window: dropped.
    out, result = resize_crop(image, target, 2.0, (16, 16), (6, 6))
    assert result["labels"].tolist() == [1]
    assert torch.equal(result["masks"][0], _masks(16, 16, (2, 16, 10, 16))[0])


def test_large_scale_jitter_gives_a_fixed_size():
    image, target = _item(30, 50, (1, 2, 3), [(0, 30, 0, 50), (10, 12, 10, 12)], [0, 1])
    sizes = set()
    for seed in range(30):
        out, result = large_scale_jitter(image, target, np.random.default_rng(seed), size=(32, 40), scale=(0.1, 2.0))
        assert out.shape == (3, 32, 40) and out.dtype == torch.uint8
        assert result["masks"].shape[1:] == (32, 40) and result["masks"].dtype == torch.bool
        assert len(result["masks"]) == len(result["labels"]) >= 1  # the full-image instance always shows
        assert result["masks"].flatten(1).any(1).all()  # no empty instance
        sizes.add(int(result["masks"][0].sum()))
    assert len(sizes) > 10  # the scale varies


def test_augmented_dataset_is_reproducible_and_forwards_the_data_set():
    base = SyntheticShapes(num_images=6, image_size=48, seed=0)
    data = AugmentedDataset(base, copy_paste=1.0, lsj=dict(size=(40, 40), scale=(0.5, 1.5)))
    assert data.CLASSES == base.CLASSES and len(data) == 6 and data.coco is base.coco
    samples = SeededSamples(data)
    a, b, c = samples[(2, 11)], samples[(2, 11)], samples[(2, 12)]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1]["masks"], b[1]["masks"])
    assert not torch.equal(a[0], c[0])
    for i in range(6):
        image, target = samples[(i, i)]
        assert image.shape == (3, 40, 40) and target["masks"].shape[1:] == (40, 40)
        assert len(target["labels"]) == len(target["masks"]) and target["labels"].max() < len(base.CLASSES)
    # copy_paste=1.0 pastes every time: more instances than jitter alone gives, over the set.
    plain = SeededSamples(AugmentedDataset(base, lsj=dict(size=(40, 40), scale=(0.5, 1.5))))
    assert sum(len(samples[(i, i)][1]["labels"]) for i in range(6)) > \
        sum(len(plain[(i, i)][1]["labels"]) for i in range(6))


def test_build_dataset_reads_the_augment_key(tmp_path):
    cfg = dict(type="SyntheticShapes", num_images=4, image_size=32,
               augment=dict(copy_paste=0.5, lsj=dict(size=(24, 24), scale=(0.1, 2.0))))
    data = build_dataset(cfg)
    assert isinstance(data, AugmentedDataset) and data.copy_paste == 0.5
    assert data.lsj == {"size": (24, 24), "scale": (0.1, 2.0)}
    assert isinstance(build_dataset({**cfg, "augment": {}}), SyntheticShapes)  # empty: off
    with pytest.raises(ConfigError, match="copy_pste"):
        build_dataset({**cfg, "augment": dict(copy_pste=0.5)})
    with pytest.raises(ConfigError, match="lsj"):
        build_dataset({**cfg, "augment": dict(lsj=dict(scale=(0.1, 2.0)))})
    with pytest.raises(ConfigError, match="probability"):
        build_dataset({**cfg, "augment": dict(copy_paste=2)})
    # The key may be set from the command line although the config does not have it.
    from helpers import DEMO_CONFIG
    loaded = load_config(DEMO_CONFIG, ["data.train.augment={'copy_paste': 0.5}"])
    assert loaded.data.train.augment.copy_paste == 0.5


def test_max_images_turns_the_augmentation_off_for_larger_data_sets(caplog):
    cfg = dict(type="SyntheticShapes", num_images=4, image_size=32, augment=dict(copy_paste=0.5, max_images=4))
    assert isinstance(build_dataset(cfg), AugmentedDataset)  # 4 images: at most max_images
    with caplog.at_level(logging.INFO, logger="solov2"):
        plain = build_dataset({**cfg, "num_images": 5})
    assert isinstance(plain, SyntheticShapes) and "augment is off: 5 training images" in caplog.text
    with pytest.raises(ConfigError, match="max_images"):
        build_dataset({**cfg, "augment": dict(copy_paste=0.5, max_images="many")})
    assert isinstance(build_dataset({**cfg, "augment": dict(max_images=10)}), SyntheticShapes)  # nothing to apply


def test_the_demo_config_augments_small_training_sets_only():
    from helpers import DEMO_CONFIG

    from solov2.data.augment import resolve_lsj_size
    for images, augmented in ((60, True), (200, True), (1000, False)):
        cfg = load_config(DEMO_CONFIG)
        augment = cfg.data.train.augment
        cfg.data.train = dict(type="SyntheticShapes", num_images=images, image_size=128, augment=augment)
        resolve_lsj_size(cfg)
        assert cfg.data.train["augment"]["lsj"]["size"] == (160, 160)  # the small set's train scale, into the config
        assert isinstance(build_dataset(cfg.data.train), AugmentedDataset) == augmented


def test_lsj_without_a_size_takes_the_largest_train_scale():
    from solov2.data.augment import resolve_lsj_size
    cfg = {"model": {"transform": {"train_scales": [(1333, 640), (1333, 800)]}},
           "data": {"train": {"augment": {"lsj": {"scale": (0.1, 2.0)}}}}}
    resolve_lsj_size(cfg)
    assert cfg["data"]["train"]["augment"]["lsj"]["size"] == (800, 1333)  # (h, w): short side, long side
    del cfg["model"]["transform"]["train_scales"], cfg["data"]["train"]["augment"]["lsj"]["size"]
    with pytest.raises(ConfigError, match="lsj has no size"):
        resolve_lsj_size(cfg)


def test_a_small_set_trains_and_predicts_at_least_at_the_augments_scales():
    from helpers import TINY_SHAPES

    from solov2.data.augment import resolve_lsj_size, resolve_scales
    augment = dict(copy_paste=1.0, lsj=dict(scale=(0.5, 2.0)), max_images=4, min_train_scale=(160, 160),
                   min_test_scale=224)
    for images, augmented in ((4, True), (5, False)):
        cfg = load_config(TINY_SHAPES)
        before = dict(cfg.model.transform)
        cfg.data.train = dict(type="SyntheticShapes", num_images=images, image_size=32, augment=dict(augment))
        resolve_lsj_size(cfg)
        assert cfg.data.train["augment"]["lsj"]["size"] == (160, 160)  # jitter to the raised train scale
        dataset = build_dataset(cfg.data.train)
        logged = []
        resolve_scales(cfg, dataset, log=logged.append)
        if augmented:
            assert cfg.model.transform["train_scales"] == [(160, 160)]
            assert cfg.model.transform["test_scale"] == (224, 224)
            assert logged == ["data.train.augment: 4 training images, the model trains at [(160, 160)] and "
                              "predicts at (224, 224)"]
        else:  # more than max_images: neither the augmentation nor its scales
            assert not isinstance(dataset, AugmentedDataset) and dict(cfg.model.transform) == before
            assert logged == []
    # A larger scale of the model's own is kept; a smaller one among several is raised.
    cfg = load_config(TINY_SHAPES, {"model.transform.train_scales": [(96, 96), (320, 320)],
                                    "model.transform.test_scale": (320, 320)})
    cfg.data.train = dict(type="SyntheticShapes", num_images=4, image_size=32, augment=dict(augment))
    resolve_lsj_size(cfg)
    resolve_scales(cfg, build_dataset(cfg.data.train))
    assert cfg.data.train["augment"]["lsj"]["size"] == (320, 320)
    assert cfg.model.transform["train_scales"] == [(160, 160), (320, 320)]
    assert tuple(cfg.model.transform["test_scale"]) == (320, 320)
    cfg.data.train["augment"]["min_test_scale"] = (0, 224)
    with pytest.raises(ConfigError, match="augment.min_test_scale: a scale of two sizes"):
        resolve_scales(cfg, build_dataset(cfg.data.train))


def test_min_train_scale_may_be_one_number():
    from solov2.data.augment import resolve_lsj_size
    cfg = {"model": {"transform": {"train_scales": [(128, 128)]}},
           "data": {"train": {"augment": {"lsj": {"scale": (0.5, 2.0)}, "min_train_scale": 160}}}}
    resolve_lsj_size(cfg)
    assert cfg["data"]["train"]["augment"]["lsj"]["size"] == (160, 160)

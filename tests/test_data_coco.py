"""CocoDataset on a tiny hand-written COCO file: every segmentation kind, crowd regions, broken annotations."""
import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from solov2.data import CocoDataset, build_dataset, collate
from solov2.errors import ConfigError, DataError

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
    def ann(i, img, cat, segm, **kw):
        return {"id": i, "image_id": img, "category_id": cat, "segmentation": segm, "iscrowd": 0, **kw}
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


# ----------------------------------------------------------------------------- files as people have them
def _write_coco(path, images, annotations, categories=({"id": 1, "name": "thing"},)):
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": list(categories)}))
    return str(path)


def test_exif_rotated_jpeg_is_read_upright_and_matches_its_annotations(tmp_path):
    """A phone photo: pixels stored sideways with EXIF orientation 6 ("rotate 90 degrees clockwise to show")."""
    upright = np.full((H, W, 3), 20, dtype=np.uint8)
    upright[3:8, 2:10] = 230  # the annotated object, where RECT_POLY is
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # what the camera wrote: (W, H) pixels
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "photo.jpg", quality=95, exif=exif)
    ann = _write_coco(tmp_path / "ann.json", [{"id": 1, "file_name": "photo.jpg", "height": H, "width": W}],
                      [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[2, 3, 10, 3, 10, 8, 2, 8]]}])
    image, target = CocoDataset(ann, str(tmp_path))[0]
    assert image.shape == (3, H, W)
    mask = target["masks"][0]
    assert np.array_equal(mask.numpy(), RECT_POLY)
    grey = image.float().mean(0)
    assert grey[mask].mean() > 200 and grey[~mask].mean() < 50  # the object's pixels are under its mask
    # the same read for prediction
    from solov2.data.image import read_rgb
    assert np.array_equal(read_rgb(tmp_path / "photo.jpg"), image.permute(1, 2, 0).numpy())


def test_size_mismatch_says_width_x_height_and_hints_at_exif(tmp_path):
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(tmp_path / "a.png")
    ann = _write_coco(tmp_path / "ann.json", [{"id": 1, "file_name": "a.png", "height": W, "width": H}],
                      [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[2, 3, 10, 3, 10, 8, 2, 8]]}])
    with pytest.raises(DataError) as info:
        CocoDataset(ann, str(tmp_path))[0]
    msg = str(info.value)
    assert f"image is {W} x {H} (width x height) but" in msg and f"says {H} x {W}" in msg
    assert "EXIF" in msg and "\n" not in msg


def test_16_bit_grey_png_is_scaled_to_8_bits(tmp_path):
    import cv2

    from solov2.data import read_image
    values = (np.arange(H * W).reshape(H, W) * (65535 // (H * W - 1))).astype(np.uint16)
    values[0, 0], values[-1, -1] = 0, 65535
    cv2.imwrite(str(tmp_path / "grey16.png"), values)
    assert Image.open(tmp_path / "grey16.png").mode.startswith("I;16")
    image = read_image(tmp_path / "grey16.png")
    assert image.dtype == torch.uint8 and image.shape == (3, H, W)
    want = np.round(values / 257.0).astype(np.uint8)  # 65535 -> 255, not clipped to white
    for channel in image:
        assert np.abs(channel.numpy().astype(int) - want).max() <= 1
    assert image.min() == 0 and image.max() == 255 and 0.3 < image.float().mean() / 255 < 0.7


def test_48_bit_rgb_png_is_read_as_8_bit_rgb(tmp_path):
    import cv2

    from solov2.data import read_image
    rng = np.random.default_rng(0)
    rgb16 = rng.integers(0, 65536, (H, W, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "rgb48.png"), rgb16[:, :, ::-1])  # cv2 writes BGR
    image = read_image(tmp_path / "rgb48.png").permute(1, 2, 0).numpy().astype(int)
    assert np.abs(image - rgb16 / 257.0).max() <= 1.0  # each channel scaled, in RGB order


def test_float_image_is_refused_in_one_line(tmp_path):
    from solov2.data import read_image
    Image.fromarray(np.ones((H, W), np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(DataError, match=r"f\.tif: floating point image") as info:
        read_image(tmp_path / "f.tif")
    assert "\n" not in str(info.value)


def test_string_image_ids_through_dataset_and_coco_evaluation(tmp_path):
    from pycocotools.coco import COCO

    from solov2.evaluation.evaluator import encode_result, evaluate
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(tmp_path / name)
    images = [{"id": "img_002", "file_name": "b.png", "height": H, "width": W},
              {"id": "img_001", "file_name": "a.png", "height": H, "width": W}]
    anns = [{"id": 1, "image_id": "img_001", "category_id": 1, "segmentation": [[2, 3, 10, 3, 10, 8, 2, 8]]},
            {"id": 2, "image_id": "img_002", "category_id": 1, "segmentation": _compressed_rle(CRLE_MASK)},
            {"id": 3, "image_id": "img_404", "category_id": 1, "segmentation": [[2, 3, 10, 3, 10, 8, 2, 8]]}]
    ann_file = _write_coco(tmp_path / "ann.json", images, anns)
    ds, messages = _load(ann_file, str(tmp_path))
    assert ds.problems == {"unknown image id": [3]}
    assert len(ds) == 2 and all(isinstance(i, int) for i in ds.img_ids)
    by_name = {}
    for i in range(len(ds)):
        _, target = ds[i]
        by_name[target["file_name"]] = ds.original_image_id(target["image_id"])
    assert by_name == {"a.png": "img_001", "b.png": "img_002"}
    # perfect predictions through the evaluation path of `solov2 eval` give AP 1 ...
    encoded = []
    for i in range(len(ds)):
        _, target = ds[i]
        encoded.append(encode_result({"masks": target["masks"], "labels": target["labels"],
                                      "scores": torch.ones(len(target["labels"]))}))
    metrics = evaluate(ds, encoded, "segm", str(tmp_path / "eval"), log=lambda s: None)
    assert metrics["mask_AP"] == pytest.approx(1.0)
    # ... and the results file it writes uses the user's own ids: it loads against the user's file
    results = json.loads((tmp_path / "eval/segm_results.json").read_text())
    assert {r["image_id"] for r in results} == {"img_001", "img_002"}
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):
        user_gt = COCO(ann_file)
        assert len(user_gt.loadRes(results).anns) == 2


def test_annotations_are_kept_as_arrays_not_python_objects(tmp_path):
    """What forked workers share must not be per-annotation Python objects (their reference counts get written,
    which copies the pages into every worker): no COCO object, no list or dict that grows with the data."""
    from pycocotools.coco import COCO

    from solov2.data.records import SerializedList
    n = 300
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(tmp_path / "a.png")
    data = {"images": [{"id": i, "file_name": "a.png", "height": H, "width": W} for i in range(1, n + 1)],
            "annotations": [{"id": i, "image_id": i, "category_id": 1, "iscrowd": 0,
                             "segmentation": [[2, 3, 10, 3, 10, 8, 2, 8]]} for i in range(1, n + 1)],
            "categories": [{"id": 1, "name": "one"}]}
    (tmp_path / "ann.json").write_text(json.dumps(data))
    ds = CocoDataset(str(tmp_path / "ann.json"), str(tmp_path))
    assert len(ds) == n and ds[n - 1][1]["masks"].sum() == 5 * 8

    def containers(obj, depth=0):
        for value in vars(obj).values():
            assert not isinstance(value, COCO)
            if isinstance(value, (list, dict, set, tuple)):
                assert len(value) < 10, (type(value), len(value))
            elif hasattr(value, "__dict__") and not isinstance(value, SerializedList) and depth < 2:
                containers(value, depth + 1)
            elif isinstance(value, np.ndarray):
                assert value.dtype != object
    containers(ds)
    assert isinstance(ds.coco, COCO) and ds.coco is not ds.coco  # built on demand, never kept
    assert len(ds.ground_truth()["annotations"]) == n

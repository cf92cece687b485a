"""LabelMe folder -> COCO JSON -> CocoDataset: the masks are the drawn polygons."""
import json
import warnings

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from solov2.cli import main
from solov2.data import CocoDataset
from solov2.data.labelme import labelme_to_coco
from solov2.errors import DataError

H, W = 40, 60


def _poly_mask(*polygons):
    """pycocotools' rasterization of flat polygons (the reference CocoDataset must reproduce)."""
    rle = mask_utils.merge(mask_utils.frPyObjects([list(map(float, p)) for p in polygons], H, W))
    with warnings.catch_warnings():  # pycocotools' decode trips a numpy 2 DeprecationWarning
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


def _shape(label, points, kind="polygon", group_id=None):
    return {"label": label, "points": points, "group_id": group_id, "shape_type": kind, "flags": {}}


def _labelme(path, image_path, shapes, h=H, w=W):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": image_path,
                                "imageData": None, "imageHeight": h, "imageWidth": w}))


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "labelme"
    (root / "images").mkdir(parents=True)
    (root / "cam2").mkdir()
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(root / "images/frame.png")
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(root / "cam2/frame.jpg")
    tri = [[5, 5], [25, 5], [15, 20]]
    _labelme(root / "cam1/frame.json", "../images/frame.png", [  # the image in another folder
        _shape("dog", tri),
        _shape("cat", [[30, 2], [50, 12]], "rectangle"),
        _shape("dog", [[2, 25], [12, 25], [12, 35], [2, 35]], group_id=1),  # two parts of one dog
        _shape("dog", [[20, 25], [30, 25], [30, 38]], group_id=1),
        _shape("cat", [[40, 25], [55, 25], [55, 38], [40, 38]], group_id=1),  # same group id, other label
        _shape("dog", [[0, 0], [10, 10]], "line"),  # not an instance
    ])
    _labelme(root / "cam2/frame.json", "frame.jpg", [_shape("bird", [[30, 20], [30, 30]], "circle")])
    return root


def test_labelme_to_coco_to_dataset_masks_equal_the_polygons(folder, tmp_path, caplog):
    out = tmp_path / "coco.json"
    data = labelme_to_coco(str(folder), str(out))
    assert [r.getMessage() for r in caplog.records] == [
        f"{folder / 'cam1/frame.json'}: shape 5 (label 'dog', line) skipped: a line is not an instance "
        "(only polygon, rectangle, circle are)"]
    assert [c["name"] for c in data["categories"]] == ["bird", "cat", "dog"]
    assert [c["id"] for c in data["categories"]] == [1, 2, 3]
    assert [im["file_name"] for im in data["images"]] == ["images/frame.png", "cam2/frame.jpg"]
    ds = CocoDataset(str(out), str(folder))
    assert ds.CLASSES == ("bird", "cat", "dog")
    image, target = ds[0]
    assert image.shape == (3, H, W)
    names = [ds.CLASSES[i] for i in target["labels"]]
    assert names == ["dog", "cat", "dog", "cat"]
    want = [_poly_mask([5, 5, 25, 5, 15, 20]), _poly_mask([30, 2, 50, 2, 50, 12, 30, 12]),
            _poly_mask([2, 25, 12, 25, 12, 35, 2, 35], [20, 25, 30, 25, 30, 38]),
            _poly_mask([40, 25, 55, 25, 55, 38, 40, 38])]
    for got, ref in zip(target["masks"].numpy(), want):
        assert np.array_equal(got, ref)
    # also the same shapes as OpenCV draws them (another rasterizer: equal up to the boundary pixels)
    cv = np.zeros((H, W), np.uint8)
    cv2.fillPoly(cv, [np.array([[5, 5], [25, 5], [15, 20]], np.int32)], 1)
    mask, drawn = target["masks"][0].numpy(), cv.astype(bool)
    assert (mask & drawn).sum() / (mask | drawn).sum() > 0.8
    _, target = ds[1]
    circle = np.zeros((H, W), np.uint8)
    cv2.circle(circle, (30, 20), 10, 1, -1)
    got = target["masks"][0].numpy()
    assert (got & circle.astype(bool)).sum() / (got | circle.astype(bool)).sum() > 0.9


def test_command_line_and_image_root(folder, tmp_path, capsys):
    out = tmp_path / "out/coco.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["labelme-to-coco", str(folder), str(out), "--image-root", str(folder / "images")]) == 0
    assert "file_name is relative to" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["images"][0]["file_name"] == "frame.png" and data["images"][1]["file_name"] == "../cam2/frame.jpg"
    assert len(CocoDataset(str(out), str(folder / "images"))) == 2


def test_bad_files_give_one_line_naming_the_file(folder, tmp_path, capsys):
    (folder / "cam2/frame.jpg").unlink()
    assert main(["labelme-to-coco", str(folder), str(tmp_path / "x.json")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {folder / 'cam2/frame.json'}: image ") and err.endswith("not found")
    (folder / "cam2/frame.json").write_text('{"shapes": [')
    assert main(["labelme-to-coco", str(folder), str(tmp_path / "x.json")]) == 1
    assert capsys.readouterr().err.strip().startswith(f"error: {folder / 'cam2/frame.json'}: invalid JSON")
    _labelme(folder / "cam2/frame.json", "../images/frame.png", [], h=W, w=H)
    with pytest.raises(DataError, match=rf"is {W} x {H} \(width x height\) but the JSON says {H} x {W}"):
        labelme_to_coco(str(folder))
    with pytest.raises(DataError, match="no LabelMe"):
        labelme_to_coco(str(folder / "images"))


def test_skipped_shapes_are_one_clean_line_each_naming_the_file(folder, tmp_path, capsys, monkeypatch):
    _labelme(folder / "cam2/frame.json", "frame.jpg", [
        _shape("bird", [[30, 20], [30, 30]], "circle"),
        _shape("cat", [[1, 1], [9, 9]]),  # a polygon of 2 points
        _shape("cat", [[1, 1], [5, 5], [9, 9]]),  # 3 points on a line
    ])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no warnings.warn (it printed its own source line)
        assert main(["labelme-to-coco", str(folder), str(tmp_path / "coco.json")]) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"warning: {folder / 'cam1/frame.json'}: shape 5 (label 'dog', line) skipped: a line is not an instance "
        "(only polygon, rectangle, circle are)",
        f"warning: {folder / 'cam2/frame.json'}: shape 1 (label 'cat', polygon) skipped: degenerate: 2 point(s), "
        "a polygon needs 3",
        f"warning: {folder / 'cam2/frame.json'}: shape 2 (label 'cat', polygon) skipped: degenerate: no area "
        "(its points are on one line)"]
    import solov2.data.labelme as labelme
    monkeypatch.setattr(labelme, "MAX_WARNINGS", 1)  # many skipped shapes: the rest are counted in one line
    lines = []
    labelme_to_coco(str(folder), warn=lines.append)
    assert len(lines) == 2 and lines[1] == "... and 2 more skipped shapes (3 in all: 2 degenerate polygon, 1 line)"


def test_categories_from_an_existing_coco_file(folder, tmp_path, capsys):
    train = tmp_path / "train.json"
    categories = [{"id": 1, "name": "bird"}, {"id": 3, "name": "cat", "supercategory": "animal"},
                  {"id": 7, "name": "dog"}, {"id": 9, "name": "fish"}]  # fish: no instance in this folder
    train.write_text(json.dumps({"images": [], "annotations": [], "categories": categories}))
    out = tmp_path / "val.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["labelme-to-coco", str(folder), str(out), "--categories-from", str(train)]) == 0
    assert f"4 classes (from {train})" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["categories"] == categories
    by_id = {c["id"]: c["name"] for c in categories}
    assert [by_id[a["category_id"]] for a in data["annotations"]] == ["dog", "cat", "dog", "cat", "bird"]
    ds = CocoDataset(str(out), str(folder))
    assert ds.CLASSES == ("bird", "cat", "dog", "fish") and ds.cat_ids == [1, 3, 7, 9]
    train.write_text(json.dumps({"categories": [c for c in categories if c["name"] != "bird"]}))
    assert main(["labelme-to-coco", str(folder), str(out), "--categories-from", str(train)]) == 1
    assert capsys.readouterr().err.strip() == (f"error: {folder / 'cam2/frame.json'}: label 'bird' is not a category "
                                               f"of {train} ('cat', 'dog', 'fish')")
    train.write_text(json.dumps({"categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "cat"}]}))
    with pytest.raises(DataError, match="category names must be unique; repeated: cat"):
        labelme_to_coco(str(folder), categories_from=str(train))
    with pytest.raises(FileNotFoundError, match="nope.json: COCO file"):
        labelme_to_coco(str(folder), categories_from=str(tmp_path / "nope.json"))

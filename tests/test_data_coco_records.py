"""CocoRecords: the arrays CocoDataset keeps equal pycocotools' reading of the same file, dropped annotations
aside, on a random file with every segmentation kind."""
import contextlib
import io
import json
import warnings

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from solov2.data.coco_records import CocoRecords, _polygon_parts
from solov2.data.records import SerializedList


def _random_file(path, num_images=40, seed=0):
    rng = np.random.default_rng(seed)
    h, w = 50, 70
    images = [{"id": 100 + int(i), "file_name": f"{i}.png", "height": h, "width": w, "extra": "x"}
              for i in rng.permutation(num_images)]
    anns, next_id = [], 1
    for img in images:
        for _ in range(rng.integers(0, 6)):
            kind = rng.integers(0, 4)
            if kind == 0:  # one or two polygon parts
                segm = [np.round(rng.uniform(0, 49, 2 * rng.integers(3, 9)), 2).tolist()
                        for _ in range(rng.integers(1, 3))]
            elif kind == 1:  # compressed RLE
                m = np.zeros((h, w), np.uint8)
                m[rng.integers(0, 20):rng.integers(25, 50), rng.integers(0, 30):rng.integers(35, 70)] = 1
                rle = mask_utils.encode(np.asfortranarray(m))
                segm = {"size": [h, w], "counts": rle["counts"].decode("ascii")}
            elif kind == 2:  # uncompressed RLE (crowd)
                segm = {"size": [h, w], "counts": [100, 50, h * w - 150]}
            else:  # polygon with no area in the file (computed)
                segm = [[1.5, 1.5, 30.25, 2.0, 20.0, 40.75]]
            ann = {"id": next_id, "image_id": img["id"], "category_id": int(rng.choice([2, 7, 9])),
                   "segmentation": segm, "iscrowd": int(kind == 2), "bbox": [1, 2, 3, 4]}
            if kind != 3:
                ann["area"] = 123.0
            anns.append(ann)
            next_id += 1
    # in file order, not grouped by image
    order = rng.permutation(len(anns))
    anns = [anns[k] for k in order]
    anns += [{"id": 9001, "image_id": 100, "category_id": 999, "segmentation": [[0, 0, 5, 0, 5, 5]]},
             {"id": 9002, "image_id": 100, "category_id": 2, "segmentation": [[0, 0, 5, 0, 5, 5], [1, 2]]},
             {"id": 9003, "image_id": 100, "category_id": 2, "segmentation": [[0, 0, 5, 0, "x", 5]]},
             {"id": 9004, "image_id": 4242, "category_id": 2, "segmentation": [[0, 0, 5, 0, 5, 5]]}]
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": c, "name": f"c{c}"} for c in (9, 2, 7)]}))
    return str(path)


def test_records_equal_pycocotools_reading(tmp_path):
    path = _random_file(tmp_path / "ann.json")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = CocoRecords.from_file(path)
    message = " ".join(str(w.message) for w in caught)
    assert "annotation 9001 has category_id 999, not in categories" in message
    assert records.problems == {"unknown category id": [9001], "broken polygon part (instance kept)": [9002],
                                "broken polygon": [9003], "unknown image id": [9004]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(path)
    assert sorted(records.image_ids.tolist()) == sorted(coco.imgs)
    for img_id in coco.imgs:
        row = int(records.rows_of([img_id])[0])
        info = records.image(row)
        assert info == {k: coco.imgs[img_id][k] for k in ("id", "file_name", "height", "width")}
        theirs = [a for a in coco.imgToAnns[img_id] if a["id"] < 9000]
        ours = [a for a in records.annotations(row, as_lists=True) if a["id"] < 9000]
        assert [a["id"] for a in ours] == [a["id"] for a in theirs]  # file order within an image
        for a, b in zip(ours, theirs):
            assert (a["category_id"], a["iscrowd"], a["bbox"]) == (b["category_id"], b["iscrowd"], b["bbox"])
            assert a["segmentation"] == b["segmentation"]
            if "area" in b:
                assert a["area"] == b["area"]
            else:  # computed: the pixel area of the polygon, about
                assert a["area"] == pytest.approx(float(mask_utils.area(coco.annToRLE(b))), rel=0.1)
    partial = [a for a in records.annotations(int(records.rows_of([100])[0])) if a["id"] == 9002][0]
    assert len(partial["segmentation"]) == 1 and partial["segmentation"][0].tolist() == [0, 0, 5, 0, 5, 5]
    gt = records.to_coco_dict()
    json.dumps(gt)  # plain JSON content
    assert len(gt["annotations"]) == len(coco.anns) - 3  # 9002 kept with its good part


def test_vectorized_shoelace_equals_one_polygon_at_a_time():
    rng = np.random.default_rng(1)
    parts = [rng.uniform(-5, 60, 2 * rng.integers(3, 30)).tolist() for _ in range(300)]
    parts[7][0] = float("inf")  # the first vertex: the part before it is still fine
    parts[9][5] = float("nan")
    coords, lengths, area, ok = _polygon_parts(list(parts))
    np.testing.assert_array_equal(coords, [v for p in parts for v in p])  # NaN equal to NaN here
    assert lengths.tolist() == [len(p) for p in parts]
    for k, p in enumerate(parts):
        x, y = np.asarray(p[0::2]), np.asarray(p[1::2])
        with np.errstate(invalid="ignore"):
            expected = 0.5 * abs(x[:-1] @ y[1:] - y[:-1] @ x[1:] + x[-1] * y[0] - y[-1] * x[0])
        if k in (7, 9):
            assert not ok[k]
        else:
            assert ok[k] and area[k] == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_serialized_list():
    items = [{"a": 1}, "text", [1.5, 2.5], None]
    s = SerializedList(items)
    assert len(s) == 4 and list(s) == items and s[-1] is None
    s[0]["a"] = 2  # a fresh copy each time: nothing stored changes
    assert s[0] == {"a": 1}
    with pytest.raises(IndexError):
        s[4]
    assert s.nbytes > 0


@pytest.mark.parametrize("poly, scale", [([239.97, 260.24, 300.01, 261.0, 250.5, 400.99], 100),
                                         ([0.123, 0.5, 10.0, 0.25, 5.0, 9.75], 1)])
def test_coordinates_are_stored_compactly_and_read_back_exactly(tmp_path, poly, scale):
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png", "height": 500, "width": 500}],
                                "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [poly]}],
                                "categories": [{"id": 1}]}))
    records = CocoRecords.from_file(str(path))
    assert records.coord_scale == scale and records.coords.dtype == (np.int32 if scale == 100 else np.float64)
    part = records.annotations(0)[0]["segmentation"][0]
    assert part.dtype == np.float64 and part.tolist() == poly  # the very same doubles json parsed

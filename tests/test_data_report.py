"""The data report (`solov2 check-data`, and the summary at the start of training) on a hand-made tiny set."""
import json
import warnings

import numpy as np
import pytest
from helpers import DEMO_CONFIG
from PIL import Image

from solov2.cli import main
from solov2.data import CocoDataset, SyntheticShapes
from solov2.data.report import data_report, format_report, log_data_report, save_report_picture

SIZE = 100
RANGES = ((1, 16), (8, 32), (64, 128))  # level 2 gets nothing from this set


def _square(x, y, side):
    return [[x, y, x + side, y, x + side, y + side, x, y + side]]  # rasterizes to side x side pixels


@pytest.fixture
def tiny(tmp_path):
    for name in ("1.png", "2.png", "3.png"):
        Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(tmp_path / name)
    def ann(i, img, cat, segm, **kw):
        return {"id": i, "image_id": img, "category_id": cat, "segmentation": segm, **kw}
    data = {
        "images": [{"id": k, "file_name": f"{k}.png", "height": SIZE, "width": SIZE} for k in (1, 2, 3)],
        "categories": [{"id": 1, "name": "apple"}, {"id": 2, "name": "bike"}, {"id": 3, "name": "cat"}],
        "annotations": [
            ann(1, 1, 1, _square(0, 0, 4)),  # size 4: level 0
            ann(2, 1, 1, _square(10, 10, 12)),  # size 12: levels 0 and 1 (ranges overlap)
            ann(3, 1, 2, _square(30, 30, 20)),  # size 20: level 1
            ann(4, 2, 2, _square(5, 5, 40)),  # size 40: between level 1 and level 2, no level
            ann(5, 3, 1, _square(0, 0, 30), iscrowd=1),  # image 3 has a crowd region only
            ann(7, 2, 1, [[1, 1, 5, 5]]),  # two points: broken polygon
            ann(8, 2, 9, _square(0, 0, 5)),  # unknown category
            ann(9, 2, 1, [[60.1, 60.1, 60.3, 60.1, 60.2, 60.3]]),  # a sliver that covers no pixel
        ],
    }
    (tmp_path / "ann.json").write_text(json.dumps(data))
    return str(tmp_path / "ann.json"), str(tmp_path)


def test_counts_per_class_level_and_dropped_ids(tiny):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = CocoDataset(*tiny)
    report = data_report(ds, RANGES)
    assert report.classes == ["apple", "bike", "cat"]
    assert (report.num_images, report.num_used_images) == (3, 2)
    assert report.images_without_instances == [3]
    assert report.instances_per_class == [2, 2, 0]
    assert sorted(report.sizes.tolist()) == [4, 12, 20, 40]
    assert report.instances_per_level == [2, 2, 0]
    assert report.class_level_counts.tolist() == [[2, 1, 0], [0, 1, 0], [0, 0, 0]]
    assert report.outside_levels == 1
    assert report.dropped == {"broken polygon": [7], "unknown category id": [8], "covers no pixel": [9]}
    text = format_report(report)
    for expected in ("3 images in the annotation file, 2 used, 4 instances, 3 classes",
                     "images without instances: 1 (ids 3)", "broken polygon: 1 (ids 7)",
                     "unknown category id: 1 (ids 8)", "covers no pixel: 1 (ids 9)",
                     "WARNING: class 'cat' has no instance", "WARNING: FPN level 2 (sizes 64..128 px) gets no instance",
                     "WARNING: 1 instance(s) fall outside every level"):
        assert expected in text, (expected, text)
    assert "FPN level 0" not in text and "FPN level 1" not in text


def test_sizes_are_measured_at_the_training_scale(tiny):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = CocoDataset(*tiny)
    report = data_report(ds, RANGES, input_scale=(200, 200))  # 100 px images are trained at 200 px
    assert sorted(report.sizes.tolist()) == [8, 24, 40, 80]
    assert report.instances_per_level == [1, 2, 1] and report.outside_levels == 1  # 8 on L0+L1; 40: no level


def test_picture_and_the_one_call_for_the_trainer(tmp_path):
    ds = SyntheticShapes(num_images=6, seed=0, image_size=96)
    lines = []
    report = log_data_report(ds, RANGES, (96, 96), str(tmp_path), log=lines.append)
    assert sum(report.instances_per_class) == sum(len(ds[i][1]["labels"]) for i in range(len(ds)))
    assert lines[0].startswith("data: 6 images") and lines[-1].endswith("data_report.png")
    picture = Image.open(tmp_path / "data_report.png")
    assert picture.format == "PNG" and picture.size[0] > 600
    assert log_data_report(object(), RANGES, None, None, log=lines.append) is None and "no 'coco'" in lines[-1]


def test_empty_report_still_draws(tmp_path, tiny):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = CocoDataset(*tiny)
    ds.img_ids = []
    report = data_report(ds, RANGES)
    assert report.instances_per_level == [0, 0, 0]
    save_report_picture(report, str(tmp_path / "empty.png"))
    assert (tmp_path / "empty.png").stat().st_size > 0


def test_check_data_command(tiny, tmp_path, capsys):
    ann_file, folder = tiny
    out = tmp_path / "report"
    assert main(["check-data", str(DEMO_CONFIG), "--out", str(out), "--cfg-options", f"data.train.ann_file={ann_file}",
                 f"data.train.img_prefix={folder}", "model.bbox_head.num_classes=3"]) == 0
    text = capsys.readouterr().out
    # A set this small trains at the demo config's small-data scale (data.train.augment.train_scale), and says so.
    assert "data.train.augment: 2 training images, the model trains at [(160, 160)]" in text
    assert "at the training input scale 160x160" in text
    assert "annotations dropped (or" in text and "ids 7" in text and (out / "data_report.png").exists()
    assert main(["check-data", str(DEMO_CONFIG), "--cfg-options", "data.train.ann_file=/nope.json"]) == 1
    assert capsys.readouterr().err.strip() == "error: /nope.json: annotation file not found"


def _val_with(tmp_path, categories):
    val = tmp_path / "val.json"
    val.write_text(json.dumps({"images": [{"id": 1, "file_name": "1.png", "height": SIZE, "width": SIZE}],
                               "annotations": [{"id": 1, "image_id": 1, "category_id": categories[0]["id"],
                                                "segmentation": _square(0, 0, 20)}],
                               "categories": categories}))
    return str(val)


def test_check_data_reports_the_val_train_category_mismatch_training_stops_on(tiny, tmp_path, capsys):
    ann_file, folder = tiny
    train = [f"data.train.ann_file={ann_file}", f"data.train.img_prefix={folder}", "model.bbox_head.num_classes=3",
             f"data.val.img_prefix={folder}"]
    out = ["--out", str(tmp_path / "report")]
    # a val set lacking one class got its own ids (as labelme-to-coco without --categories-from gives)
    val = _val_with(tmp_path, [{"id": 1, "name": "apple"}, {"id": 2, "name": "cat"}])
    assert main(["check-data", str(DEMO_CONFIG), *out, "--cfg-options", *train, f"data.val.ann_file={val}"]) == 1
    captured = capsys.readouterr()
    assert "at the training input scale" in captured.out  # the report first
    err = captured.err.strip()
    assert "\n" not in err and err.startswith(
        "error: data.val has 2 categories ['apple', 'cat'] but data.train has 3 ['apple', 'bike', 'cat']")
    assert "`solov2 train` stops on this" in err and "--categories-from" in err
    # the same names under other ids: training goes on; the check says so in one line
    val = _val_with(tmp_path, [{"id": 1, "name": "apple"}, {"id": 5, "name": "bike"}, {"id": 6, "name": "cat"}])
    assert main(["check-data", str(DEMO_CONFIG), *out, "--cfg-options", *train, f"data.val.ann_file={val}"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "data.val" in line]
    assert lines == ["WARNING: data.val has the categories of data.train under other ids ([1, 5, 6] against "
                     "[1, 2, 3]): results written with a checkpoint's ids (data.train's) will not match data.val's "
                     "annotations; `solov2 labelme-to-coco --categories-from` gives one set of ids"]
    val = _val_with(tmp_path, [{"id": 1, "name": "apple"}, {"id": 2, "name": "bike"}, {"id": 3, "name": "cat"}])
    assert main(["check-data", str(DEMO_CONFIG), *out, "--cfg-options", *train, f"data.val.ann_file={val}"]) == 0
    assert "data.val" not in capsys.readouterr().out


def test_proposed_scale_ranges_for_a_hand_made_size_distribution():
    from solov2.data.report import format_scale_ranges, propose_scale_ranges
    # 100 instances each of 10, 20, 40, 80 and 160 px: boundaries between the groups (14, 28, 57, 113), each
    # range reaching 1.41x past them, so that neighbours overlap 2x as the official ranges do
    sizes = np.repeat([10.0, 20.0, 40.0, 80.0, 160.0], 100)
    ranges = propose_scale_ranges(np.random.default_rng(0).permutation(sizes))
    assert ranges == [(1, 20), (10, 40), (20, 80), (40, 160), (80, 2048)]
    assert format_scale_ranges(ranges) == "((1, 20), (10, 40), (20, 80), (40, 160), (80, 2048))"
    # all alike (the shapes at 30 px): boundaries spread to 1.41x apart around them instead of all at 30
    alike = propose_scale_ranges(np.full(50, 30.0))
    assert [lo for lo, _ in alike] == [1, 13, 18, 25, 36] and alike[-1][1] == 2048
    assert propose_scale_ranges(np.array([5.0, 3000.0]), num_levels=2)[-1][1] == 6000  # the largest is covered
    with pytest.raises(ValueError, match="no instance sizes"):
        propose_scale_ranges(np.zeros(0))


def test_check_data_fit_prints_the_proposal_and_its_option(tiny, tmp_path, capsys):
    from solov2.data.report import propose_scale_ranges
    ann_file, folder = tiny
    opts = [f"data.train.ann_file={ann_file}", f"data.train.img_prefix={folder}", "model.bbox_head.num_classes=3"]
    assert main(["check-data", str(DEMO_CONFIG), "--out", str(tmp_path), "--fit", "--cfg-options", *opts]) == 0
    text = capsys.readouterr().out
    # sizes 4, 12, 20 and 40 px at 100 px, measured at the small set's train scale, 160 px
    expected = propose_scale_ranges(np.array([4, 12, 20, 40]) * 1.6)
    line = [s for s in text.splitlines() if s.startswith("train with them:")][0]
    assert "--cfg-options \"model.bbox_head.scale_ranges=((1, " in line
    assert line.split("scale_ranges=")[1].split('"')[0] == "(" + ", ".join(f"({a:g}, {b:g})" for a, b in expected) + ")"
    assert "proposed scale_ranges, fitted to these 4 instance sizes" in text
    # 'auto' in the config: check-data reports the fitted ranges
    assert main(["check-data", str(DEMO_CONFIG), "--out", str(tmp_path), "--cfg-options", *opts,
                 "model.bbox_head.scale_ranges=auto"]) == 0
    assert f"L0 {expected[0][0]:g}-{expected[0][1]:g}" in capsys.readouterr().out

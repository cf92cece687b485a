"""evaluate_cityscapes: official Cityscapes instance AP on the tiny tree of tests/cityscapes_fixture.py."""
from __future__ import annotations

import errno
import math

import pytest
import torch
from cityscapes_fixture import H, W

from solov2.data.cityscapes import CityscapesDataset
from solov2.evaluation import cityscapes as cs_evaluation
from solov2.evaluation.cityscapes import evaluate_cityscapes

PRESENT_IN_VAL = ("person", "rider", "car", "train", "bicycle")


def perfect_results(ds: CityscapesDataset, score: float = 1.0) -> list[dict]:
    results = []
    for i in range(len(ds)):
        _, target = ds[i]
        n = len(target["labels"])
        results.append({"masks": target["masks"], "labels": target["labels"],
                        "scores": torch.full((n,), score, dtype=torch.float32)})
    return results


def empty_results(ds: CityscapesDataset) -> list[dict]:
    return [{"masks": torch.zeros((0, H, W), dtype=torch.bool), "labels": torch.zeros((0,), dtype=torch.int64),
             "scores": torch.zeros((0,), dtype=torch.float32)} for _ in range(len(ds))]


def add_prediction(result: dict, mask: torch.Tensor, label: int, score: float) -> None:
    result["masks"] = torch.cat([result["masks"], mask[None]])
    result["labels"] = torch.cat([result["labels"], torch.tensor([label])])
    result["scores"] = torch.cat([result["scores"], torch.tensor([score])])


def box_mask(x0: int, y0: int, x1: int, y1: int) -> torch.Tensor:
    mask = torch.zeros((H, W), dtype=torch.bool)
    mask[y0:y1 + 1, x0:x1 + 1] = True
    return mask


def test_perfect_predictions_score_one(tiny_cityscapes, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the official code would drop matches.json into the working directory
    ds = CityscapesDataset(tiny_cityscapes, "val", filter_empty_gt=False)
    lines = []
    metrics = evaluate_cityscapes(ds, perfect_results(ds), tmp_path / "eval", log=lines.append)
    assert metrics["mask_AP"] == pytest.approx(1.0) and metrics["mask_AP50"] == pytest.approx(1.0)
    for name in ds.CLASSES:
        expected = 1.0 if name in PRESENT_IN_VAL else None
        for key in (f"AP_{name}", f"AP50_{name}"):
            assert math.isnan(metrics[key]) if expected is None else metrics[key] == pytest.approx(expected)
        assert metrics["per_class"][name]["AP"] is metrics[f"AP_{name}"]
    assert not (tmp_path / "matches.json").exists()
    # instanceIds were generated next to the polygons, predictions written in the official format
    assert (tiny_cityscapes / "gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_instanceIds.png").is_file()
    assert any("generated 2 missing" in line for line in lines)
    txt = tmp_path / "eval/results/frankfurt/frankfurt_000000_000294_pred.txt"
    assert txt.read_text().splitlines() == ["frankfurt_000000_000294_0.png 31 1.000000",
                                            "frankfurt_000000_000294_1.png 24 1.000000",
                                            "frankfurt_000000_000294_2.png 26 1.000000"]
    assert (tmp_path / "eval/resultInstanceLevelSemanticLabeling.json").is_file()

    # later runs reuse the instanceIds; gtInstances.json left by the train run lacks the val images: rebuilt
    train = CityscapesDataset(tiny_cityscapes, "train")
    assert evaluate_cityscapes(train, perfect_results(train), tmp_path / "eval", log=print)["mask_AP"] == 1.0
    lines.clear()
    metrics = evaluate_cityscapes(ds, perfect_results(ds), tmp_path / "eval", log=lines.append)
    assert metrics["mask_AP"] == pytest.approx(1.0)
    assert not any("generated" in line for line in lines)


def test_empty_predictions_score_zero(tiny_cityscapes, tmp_path):
    ds = CityscapesDataset(tiny_cityscapes, "val", filter_empty_gt=False)
    metrics = evaluate_cityscapes(ds, empty_results(ds), tmp_path / "eval", log=lambda _: None)
    assert metrics["mask_AP"] == 0.0 and metrics["mask_AP50"] == 0.0
    assert all(metrics[f"AP_{name}"] == 0.0 for name in PRESENT_IN_VAL)


def test_group_regions_are_ignored_but_false_positives_count(tiny_cityscapes, tmp_path):
    ds = CityscapesDataset(tiny_cityscapes, "val", filter_empty_gt=False)
    results = perfect_results(ds, score=0.9)
    car, person = ds.CLASSES.index("car"), ds.CLASSES.index("person")
    # a confident car on the cargroup of frankfurt_000000_000294: the official rules ignore it
    add_prediction(results[0], box_mask(110, 30, 127, 55), car, 1.0)
    # a confident person on the building of frankfurt_000001_000538: a false positive ranked first
    add_prediction(results[1], box_mask(100, 0, 127, 40), person, 1.0)
    metrics = evaluate_cityscapes(ds, results, tmp_path / "eval", log=lambda _: None)
    assert metrics["AP_car"] == pytest.approx(1.0)
    assert metrics["AP_person"] < 0.9
    assert metrics["AP_train"] == pytest.approx(1.0)
    # the same car on road pixels instead does count (unlabeled pixels, like groups, would be ignored)
    results = perfect_results(ds, score=0.9)
    add_prediction(results[0], box_mask(0, 44, 19, 63), car, 1.0)
    assert evaluate_cityscapes(ds, results, tmp_path / "eval", log=lambda _: None)["AP_car"] < 0.9


def test_read_only_dataset_uses_a_cache_in_out_dir(tiny_cityscapes, tmp_path, monkeypatch):
    write = cs_evaluation._write_instance_ids

    def read_only_root(polygon_file, out_file):
        if tiny_cityscapes in out_file.parents:
            raise PermissionError(errno.EACCES, "Permission denied", str(out_file))
        return write(polygon_file, out_file)

    monkeypatch.setattr(cs_evaluation, "_write_instance_ids", read_only_root)
    ds = CityscapesDataset(tiny_cityscapes, "val")
    metrics = evaluate_cityscapes(ds, perfect_results(ds), tmp_path / "eval", log=lambda _: None)
    assert metrics["mask_AP"] == pytest.approx(1.0)
    cached = tmp_path / "eval/gt_cache/gtFine/val/frankfurt/frankfurt_000001_000538_gtFine_instanceIds.png"
    assert cached.is_file()
    assert not list((tiny_cityscapes / "gtFine/val").glob("*/*_instanceIds.png"))


def test_result_count_and_mask_size_are_checked(tiny_cityscapes, tmp_path):
    ds = CityscapesDataset(tiny_cityscapes, "val")
    with pytest.raises(ValueError, match="1 results for 2 dataset images"):
        evaluate_cityscapes(ds, perfect_results(ds)[:1], tmp_path / "eval")
    results = perfect_results(ds)
    results[0]["masks"] = results[0]["masks"][:, :32]
    with pytest.raises(ValueError, match="not the image size"):
        evaluate_cityscapes(ds, results, tmp_path / "eval", log=lambda _: None)

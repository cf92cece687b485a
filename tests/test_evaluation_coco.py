"""COCO mask AP: perfect, empty and degraded predictions on the shapes data set's ground truth."""
import copy
import json

import pytest
import torch

from solov2.data import SyntheticShapes
from solov2.evaluation.coco import METRIC_NAMES, evaluate_coco, results_to_coco


@pytest.fixture(scope="module")
def shapes():
    return SyntheticShapes(num_images=8, seed=1, image_size=96)


def _predictions(ds, shift=0):
    results = []
    for i in range(len(ds)):
        _, target = ds[i]
        masks = torch.roll(target["masks"], shifts=shift, dims=2) if shift else target["masks"]
        scores = torch.linspace(1.0, 0.5, len(target["labels"]))
        result = {"masks": masks, "labels": target["labels"], "scores": scores}
        results += results_to_coco(result, target["image_id"], ds.cat_ids)
    return results


def test_results_to_coco_format():
    masks = torch.zeros((2, 10, 12), dtype=torch.bool)
    masks[0, 2:5, 3:9] = True
    masks[1, 7:10, 0:2] = True
    result = {"masks": masks, "labels": torch.tensor([1, 0]), "scores": torch.tensor([0.9, 0.25])}
    entries = results_to_coco(result, image_id=42, cat_ids=[7, 11])
    assert [e["category_id"] for e in entries] == [11, 7]
    assert [e["image_id"] for e in entries] == [42, 42]
    assert entries[0]["bbox"] == [3.0, 2.0, 6.0, 3.0] and entries[1]["bbox"] == [0.0, 7.0, 2.0, 3.0]
    assert entries[1]["score"] == pytest.approx(0.25)
    assert isinstance(entries[0]["segmentation"]["counts"], str)
    json.dumps(entries)  # must be JSON-serializable
    empty = {"masks": torch.zeros((0, 10, 12), dtype=torch.bool), "labels": torch.zeros(0, dtype=torch.int64),
             "scores": torch.zeros(0)}
    assert results_to_coco(empty, 1, [7, 11]) == []


def test_a_label_without_a_category_is_a_one_line_error():
    """A model with more classes than the data's categories (the reported IndexError in ``cat_ids[label]``)."""
    masks = torch.ones((2, 4, 4), dtype=torch.bool)
    result = {"masks": masks, "labels": torch.tensor([1, 5]), "scores": torch.tensor([0.9, 0.8])}
    with pytest.raises(ValueError) as err:
        results_to_coco(result, image_id=3, cat_ids=[7, 11])
    assert str(err.value).startswith("image 3: the model predicted label(s) [5] but the data set has 2 categories")
    assert "\n" not in str(err.value)


def test_perfect_predictions_give_ap_one(shapes):
    lines = []
    metrics = evaluate_coco(shapes.coco, _predictions(shapes), log=lines.append)
    assert set(metrics) == set(METRIC_NAMES)
    assert metrics["mask_AP"] == pytest.approx(1.0)
    assert metrics["mask_AP50"] == pytest.approx(1.0) and metrics["mask_AP75"] == pytest.approx(1.0)
    assert metrics["bbox_AP"] == pytest.approx(1.0) and metrics["bbox_AP50"] == pytest.approx(1.0)
    assert lines and "AP50" in lines[0] and "100.0" in lines[0]
    assert "mask |" in lines[0] and "bbox |" in lines[0]


def test_box_ap_reads_the_boxes_and_fills_missing_ground_truth_boxes():
    """Box AP comes from the entries' ``bbox`` (mask AP from their masks), and ground truth without a ``bbox``
    (some hand-made files) gets its mask's box instead of a KeyError."""
    ds = SyntheticShapes(num_images=4, seed=2, image_size=96)
    for ann in ds.coco.anns.values():
        ann.pop("bbox", None)
    preds = _predictions(ds)
    assert evaluate_coco(ds.coco, preds, log=lambda s: None)["bbox_AP"] == pytest.approx(1.0)
    far = [{**p, "bbox": [p["bbox"][0] + 50, p["bbox"][1] + 50, p["bbox"][2], p["bbox"][3]]} for p in preds]
    moved = evaluate_coco(ds.coco, far, log=lambda s: None)
    assert moved["bbox_AP"] == 0.0 and moved["mask_AP"] == pytest.approx(1.0)
    shifted = evaluate_coco(ds.coco, _predictions(ds, shift=3), log=lambda s: None)
    assert 0.0 < shifted["bbox_AP"] < 0.95


def test_empty_predictions_give_zero(shapes):
    lines = []
    metrics = evaluate_coco(shapes.coco, [], log=lines.append)
    assert metrics == {name: 0.0 for name in METRIC_NAMES}
    assert len(lines) == 1


def test_shifted_predictions_are_in_between(shapes):
    metrics = evaluate_coco(shapes.coco, _predictions(shapes, shift=3), log=lambda s: None)
    assert 0.0 < metrics["mask_AP"] < 0.9
    assert metrics["mask_AP50"] >= metrics["mask_AP75"] >= 0.0


def test_subset_of_images_and_stray_ids(shapes):
    preds = [r for r in _predictions(shapes) if r["image_id"] <= 4]
    # restricted to the images that were run, the half set is still perfect
    assert evaluate_coco(shapes.coco, preds, log=lambda s: None, img_ids=[1, 2, 3, 4])["mask_AP"] == pytest.approx(1.0)
    assert evaluate_coco(shapes.coco, preds, log=lambda s: None)["mask_AP"] < 0.9
    stray = [{**preds[0], "image_id": 999}]
    with pytest.raises(ValueError, match="999"):
        evaluate_coco(shapes.coco, stray, log=lambda s: None)


def _noisy_predictions(ds, seed):
    """Each ground-truth mask shifted by a random few pixels with a random score, plus false positives."""
    g = torch.Generator().manual_seed(seed)
    results = []
    for i in range(len(ds)):
        _, target = ds[i]
        masks = target["masks"]
        shifted = torch.stack([torch.roll(m, shifts=int(torch.randint(-4, 5, (1,), generator=g)), dims=1)
                               for m in masks]) if len(masks) else masks
        extra = torch.zeros((3, *masks.shape[-2:]), dtype=torch.bool)
        for k in range(3):
            y, x = torch.randint(0, masks.shape[-2] - 20, (2,), generator=g).tolist()
            extra[k, y:y + 5 + 5 * k, x:x + 20] = True
        labels = torch.cat([target["labels"], torch.randint(0, len(ds.cat_ids), (3,), generator=g)])
        result = {"masks": torch.cat([shifted, extra]), "labels": labels,
                  "scores": torch.rand(len(labels), generator=g)}
        results += results_to_coco(result, target["image_id"], ds.cat_ids)
    return results


def test_faster_coco_eval_equals_pycocotools(shapes):
    """The default evaluator (faster-coco-eval) against pycocotools on our test sets, to 1e-4: exact, shifted,
    noisy and partial predictions, a subset of the images, and ground truth with crowd regions."""
    gt = shapes.coco.dataset
    crowded = copy.deepcopy(gt)
    for ann in crowded["annotations"][::4]:
        ann["iscrowd"] = 1
    cases = [(gt, _predictions(shapes), None), (gt, _predictions(shapes, shift=3), None),
             (gt, _noisy_predictions(shapes, 0), None), (gt, _noisy_predictions(shapes, 1)[::2], None),
             (gt, _noisy_predictions(shapes, 2), [1, 2, 5]), (crowded, _noisy_predictions(shapes, 3), None)]
    for gt_dict, preds, img_ids in cases:
        ours = evaluate_coco(gt_dict, preds, log=lambda s: None, img_ids=img_ids, backend="faster-coco-eval")
        theirs = evaluate_coco(gt_dict, preds, log=lambda s: None, img_ids=img_ids, backend="pycocotools")
        assert ours.keys() == theirs.keys()
        assert all(abs(ours[k] - theirs[k]) <= 1e-4 for k in ours), (ours, theirs)
        assert 0.0 < ours["mask_AP"] <= 1.0


def test_evaluator_switch(shapes, monkeypatch):
    import faster_coco_eval
    import pycocotools.cocoeval

    from solov2.evaluation.coco import coco_eval_backend
    assert coco_eval_backend() == "faster-coco-eval"
    monkeypatch.setenv("SOLOV2_COCO_EVAL", "pycocotools")
    assert coco_eval_backend() == "pycocotools"
    assert coco_eval_backend("faster-coco-eval") == "faster-coco-eval"  # an explicit backend wins
    used = []
    monkeypatch.setattr(pycocotools.cocoeval.COCOeval, "evaluate",
                        lambda self, original=pycocotools.cocoeval.COCOeval.evaluate: used.append(1) or original(self))
    monkeypatch.setattr(faster_coco_eval.COCOeval_faster, "evaluate", lambda self: pytest.fail("not the fallback"))
    assert evaluate_coco(shapes.coco, _predictions(shapes), log=lambda s: None)["mask_AP"] == pytest.approx(1.0)
    assert used == [1, 1]  # segm, then bbox
    monkeypatch.setenv("SOLOV2_COCO_EVAL", "detectron")
    with pytest.raises(ValueError, match="SOLOV2_COCO_EVAL.*faster-coco-eval, pycocotools"):
        evaluate_coco(shapes.coco, _predictions(shapes), log=lambda s: None)

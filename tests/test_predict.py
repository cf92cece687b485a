"""`solov2 predict` over folders: results written as they come, resuming a stopped run, flat memory, the empty
case, safe mask file names and the final message."""
import json
import re

import numpy as np
import pytest
from helpers import ROOT
from PIL import Image

from solov2.apps.predict import predict_main, slugify
from solov2.cli import main
from solov2.inference.predictor import Predictor

TINY = str(ROOT / "tests/data/tiny_shapes.py")


def _checkpoint(path, classes=("disc", "rectangle", "triangle", "ring", "star"), bias=2.0):
    """Random weights; every class scores sigmoid(bias) everywhere: many detections with bias 2, none with -10."""
    import torch

    from solov2 import build_model, load_config
    from solov2.checkpoint.io import save_checkpoint
    torch.manual_seed(0)
    model = build_model(load_config(TINY))
    torch.nn.init.constant_(model.bbox_head.solo_cate.bias, bias)
    save_checkpoint(str(path), model, meta={"classes": list(classes)})
    return str(path)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pth")


def _photos(root, n, size=(40, 56)):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / f"{k:04d}.png")
    return root


def test_skip_existing_resumes_a_stopped_run(checkpoint, tmp_path, monkeypatch):
    photos = _photos(tmp_path / "in", 6)
    full = predict_main(TINY, checkpoint, [str(photos)], str(tmp_path / "full"))
    expected = json.loads((tmp_path / "full/results.json").read_text())
    assert len(full) == 6 and full.instances == len(expected) > 0

    calls = []
    original = Predictor.__call__

    def stop_after_3(self, image):
        if len(calls) == 3:
            raise KeyboardInterrupt  # as Ctrl-C would
        calls.append(1)
        return original(self, image)
    monkeypatch.setattr(Predictor, "__call__", stop_after_3)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        predict_main(TINY, checkpoint, [str(photos)], str(out))
    assert len(list(out.glob("*_pred.png"))) == 3 and not (out / "results.json").exists()

    calls.clear()
    monkeypatch.setattr(Predictor, "__call__", lambda self, image: calls.append(1) or original(self, image))
    resumed = predict_main(TINY, checkpoint, [str(photos)], str(out), skip_existing=True)
    assert len(calls) == 3 and resumed.skipped_existing == 3  # only the three the stopped run had not done
    results = json.loads((out / "results.json").read_text())
    key = lambda r: (r["image_id"], r["file_name"], r["category_id"], round(r["score"], 5))  # noqa: E731
    assert sorted(map(key, results)) == sorted(map(key, expected))  # every image once, ids as in one run
    assert resumed.instances == len(results)

    calls.clear()  # everything done: nothing runs, results.json stays complete
    again = predict_main(TINY, checkpoint, [str(photos)], str(out), skip_existing=True)
    assert calls == [] and again.skipped_existing == 6 and again.instances == len(expected)
    assert sorted(map(key, json.loads((out / "results.json").read_text()))) == sorted(map(key, expected))


@pytest.mark.slow
def test_memory_stays_flat_over_a_big_folder(checkpoint, tmp_path, monkeypatch):
    """RSS after 500 images within 10 MB of RSS after 50. The network is replaced by a stand-in that returns 60
    random instances per image at once (the real one takes seconds per image with that many on a busy CPU);
    everything else is predict's own: the loader thread, drawing, pictures, RLE encoding, the results log.
    Gathered in memory as before, the 450 images' 27,000 results would add 30 MB (tracemalloc)."""
    photos = _photos(tmp_path / "in", 500, size=(24, 32))
    rss, calls = {}, []
    rng = np.random.default_rng(0)

    def stand_in(self, image):
        h, w = image.shape[:2]
        masks = rng.random((60, h, w)) > 0.7
        labels = rng.integers(0, len(self.class_names), 60)
        calls.append(1)
        if len(calls) in (50, 500):
            rss[len(calls)] = _rss()
        return {"masks": masks, "labels": labels, "scores": np.linspace(0.9, 0.31, 60, dtype=np.float32),
                "class_names": [self.class_names[i] for i in labels]}
    monkeypatch.setattr(Predictor, "__call__", stand_in)
    outputs = predict_main(TINY, checkpoint, [str(photos)], str(tmp_path / "out"))
    assert len(calls) == 500 and outputs.instances == 500 * 60
    growth = rss[500] - rss[50]
    assert growth < 10 * 2**20, f"RSS grew {growth / 2**20:.1f} MB from image 50 to image 500"


def _rss() -> int:
    with open("/proc/self/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) * 1024


def test_no_instances_with_ann_says_what_was_written(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "quiet.pth", bias=-10.0)
    photos = _photos(tmp_path / "images", 2)
    ann = tmp_path / "val.json"
    ann.write_text(json.dumps({"images": [{"id": 1, "file_name": "0000.png", "height": 40, "width": 56}],
                               "annotations": [], "categories": [{"id": 1, "name": "disc"}]}))
    out = tmp_path / "out"
    assert main(["predict", TINY, ckpt, str(photos), "--out", str(out), "--ann", str(ann)]) == 0
    captured = capsys.readouterr()
    assert json.loads((out / "results.json").read_text()) == []
    assert "no instances found (score threshold 0.3)" in captured.err
    assert "COCO.loadRes cannot load an empty list" in captured.err
    assert "wrote 2 picture(s)/video(s) and 0 instance(s) in results.json" in captured.out


def test_final_message_counts_instances_and_mask_names_are_slugs(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "named.pth", classes=("traffic light", "café", "a/b", "車", "x"))
    photos = _photos(tmp_path / "images", 2)
    out = tmp_path / "out"
    assert main(["predict", TINY, ckpt, str(photos), "--out", str(out), "--save-masks"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert f"wrote 2 picture(s)/video(s) and {len(results)} instance(s) in results.json" in capsys.readouterr().out
    names = [p.name for p in out.glob("*_masks/*.png")]
    assert names and all(re.fullmatch(r"\d{3}_[A-Za-z0-9_-]+_\d\.\d\d\.png", n) for n in names), names[:5]
    assert {n.split("_", 1)[1].rsplit("_", 1)[0] for n in names} <= {"traffic_light", "cafe", "a_b", "class", "x"}


def test_slugify():
    assert slugify("traffic light") == "traffic_light"
    assert slugify("Café crème") == "Cafe_creme"
    assert slugify("車") == "class" and slugify("../x y") == "x_y"

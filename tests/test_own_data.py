"""Your own data with no hand edits: a 3-category COCO folder trained with the demo's 5-class config, only data
paths given; then eval, predict, export and Predictor from the checkpoint alone (docs/own-data.md)."""
import json
import os
import subprocess
import sys

import pytest
import torch
from helpers import DEMO_CONFIG, ROOT

from solov2.checkpoint.io import read_checkpoint
from solov2.cli import main
from solov2.data.synthetic import write_shapes_coco

NAMES = ["apple", "pear", "plum"]
CAT_IDS = [3, 7, 11]  # not 1..3, so that category ids and labels cannot be confused
# 64 px and without the demo config's small-data recipe (which would raise a 12-image set to 160/192 px): fast.
SMALL = ["data.workers_per_gpu=0", "data.imgs_per_gpu=4", "model.transform.train_scales=[(64, 64)]",
         "model.transform.test_scale=(64, 64)", "data.train.augment=None", "checkpoint_config.interval=1000",
         "log_config.interval=1"]


def write_three_class_coco(folder, num_images, seed):
    """A make-shapes COCO folder (64 px) keeping discs, rectangles and stars, renamed and renumbered."""
    write_shapes_coco(str(folder), num_images=num_images, seed=seed, image_size=64)
    ann_file = folder / "annotations.json"
    data = json.loads(ann_file.read_text())
    keep = {1: (3, "apple"), 2: (7, "pear"), 5: (11, "plum")}
    data["categories"] = [{"id": keep[c["id"]][0], "name": keep[c["id"]][1]} for c in data["categories"]
                          if c["id"] in keep]
    data["annotations"] = [{**a, "category_id": keep[a["category_id"]][0]} for a in data["annotations"]
                           if a["category_id"] in keep]
    ann_file.write_text(json.dumps(data))
    return ann_file, folder / "images"


def data_options(train, val):
    """The only thing a user gives: where the data is."""
    return [f"data.train.ann_file={train[0]}", f"data.train.img_prefix={train[1]}",
            f"data.val.ann_file={val[0]}", f"data.val.img_prefix={val[1]}"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("own_data")
    return {"train": write_three_class_coco(root / "train", 12, 0), "val": write_three_class_coco(root / "val", 4, 1)}


def _train(work, options, capsys=None):
    return main(["train", str(DEMO_CONFIG), "--work-dir", str(work), "--device", "cpu", "--cfg-options", *options])


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """Two iterations of the 5-class demo config on the 3-class data, and a copy of its checkpoint whose
    category branch is planted to call every cell "plum" (so that predictions exist after 2 iterations)."""
    work = tmp_path_factory.mktemp("own_run")
    assert _train(work, [*data_options(data["train"], data["val"]), *SMALL, "max_iters=2"]) == 0
    ckpt = read_checkpoint(str(work / "latest.pth"))
    bias = ckpt["state_dict"]["bbox_head.solo_cate.bias"]
    bias[:] = torch.tensor([-10.0, -10.0, 4.0])
    torch.save(ckpt, work / "plum.pth")
    return work


@pytest.mark.slow
def test_trains_for_the_datas_classes_and_evaluates(trained):
    meta = read_checkpoint(str(trained / "latest.pth"))["meta"]
    assert meta["classes"] == NAMES and meta["cat_ids"] == CAT_IDS and meta["iter"] == 2
    assert meta["config"]["model"]["bbox_head"]["num_classes"] == 3
    log = (trained / "train.log").read_text()
    assert log.count("classes: data.train has 3 categories (apple, pear, plum)") == 1
    assert "mask_AP" in json.loads((trained / "metrics.json").read_text())  # the final evaluation ran


@pytest.mark.slow
def test_eval_from_the_checkpoint_alone(trained, tmp_path):
    out = tmp_path / "metrics.json"
    assert main(["eval", str(trained / "plum.pth"), "--metrics-out", str(out)]) == 0  # data.val of training
    metrics = json.loads(out.read_text())
    assert {"mask_AP", "mask_AP50", "mask_AP75"} <= set(metrics)
    results = json.loads((trained / "eval" / "segm_results.json").read_text())
    assert results and {r["category_id"] for r in results} == {11}  # plum's COCO id, not label 2


@pytest.mark.slow
def test_predict_with_the_users_class_names(trained, data, tmp_path):
    out = tmp_path / "pred"
    assert main(["predict", str(trained / "plum.pth"), str(data["val"][1]), "--out", str(out),
                 "--score-thr", "0.5"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results and {(r["category_id"], r["category_name"]) for r in results} == {(11, "plum")}
    from solov2 import Predictor
    predictor = Predictor(str(trained / "plum.pth"), score_thr=0.5)
    assert predictor.class_names == NAMES and predictor.cat_ids == CAT_IDS
    result = predictor(str(sorted(data["val"][1].iterdir())[0]))
    assert len(result["labels"]) > 0 and set(result["class_names"]) == {"plum"}


@pytest.mark.slow
def test_predict_from_the_checkpoint_alone_in_a_fresh_process(trained, data, tmp_path):
    out = tmp_path / "pred"
    image = sorted(data["val"][1].iterdir())[0]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "solov2.cli", "predict", str(trained / "plum.pth"), str(image),
                           "--out", str(out), "--score-thr", "0.5"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    names = {r["category_name"] for r in json.loads((out / "results.json").read_text())}
    assert names == {"plum"}


@pytest.mark.slow
def test_export_from_the_checkpoint_alone(trained, data, tmp_path):
    from solov2 import Predictor
    from solov2.data import read_image
    from solov2.deploy.runtime import load_exported
    out = tmp_path / "model.onnx"
    assert main(["export", str(trained / "plum.pth"), "--out", str(out), "--input-size", "64", "64"]) == 0
    image = read_image(str(sorted(data["val"][1].iterdir())[0]))
    reference = Predictor(str(trained / "plum.pth"), optimize=False).model([image])[0]
    got = load_exported(str(out))([image])[0]
    assert reference["scores"].numel() > 0 and torch.equal(got["labels"], reference["labels"])
    torch.testing.assert_close(got["scores"], reference["scores"], atol=1e-3, rtol=0)


@pytest.mark.slow
def test_old_checkpoint_alone_needs_a_config(trained, data, tmp_path, capsys):
    ckpt = read_checkpoint(str(trained / "latest.pth"))
    ckpt["meta"] = {"epoch": 0, "iter": 2, "classes": NAMES, "config": "model = dict()"}  # the format before
    old = tmp_path / "old.pth"
    torch.save(ckpt, old)
    assert main(["predict", str(old), str(data["val"][1]), "--out", str(tmp_path / "p")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {old}: this checkpoint holds no config") and "\n" not in err


def test_val_categories_differing_from_trains_stop_before_training(data, tmp_path, capsys):
    val5 = tmp_path / "val5"
    write_shapes_coco(str(val5), num_images=2, seed=1, image_size=64)
    work = tmp_path / "work"
    assert _train(work, [*data_options(data["train"], (val5 / "annotations.json", val5 / "images")), *SMALL,
                         "max_iters=2"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("error: data.val has 5 categories ['disc', 'rectangle', 'triangle', 'ring', 'star'] but "
                   "data.train has 3 ['apple', 'pear', 'plum']; both must list the same categories in the same id "
                   "order")
    assert not list(work.glob("*.pth"))


@pytest.mark.slow  # training runs
@pytest.mark.parametrize("when,options", [("after training", []),
                                          ("at epoch 1", ["evaluation.interval=1", "max_iters=4"])])
def test_evaluation_error_names_the_checkpoint(data, tmp_path, capsys, when, options):
    work = tmp_path / "work"
    rc = _train(work, [*data_options(data["train"], data["val"]), *SMALL, "max_iters=2",
                       "evaluation.metric='bogus'", *options])
    assert rc == 1
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    err = err.splitlines()[-1]  # after the progress bars
    latest = work / "latest.pth"
    assert err == (f"error: evaluation failed {when} (unknown metric 'bogus'; expected 'segm' or 'cityscapes'); "
                   f"the trained weights are in {latest}: solov2 eval {latest}")
    meta = read_checkpoint(str(latest))["meta"]
    if when == "after training":
        assert meta["iter"] == 2
    else:  # written at the end of epoch 1, before its evaluation, and training stopped there
        assert meta["epoch"] == 1 and 0 < meta["iter"] < 4


@pytest.mark.slow
def test_two_processes_resolve_the_same_classes(data, tmp_path):
    """tools/train.py --gpus 2 (two CPU processes without CUDA): each process builds the 3-class head."""
    work = tmp_path / "work"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "tools/train.py", str(DEMO_CONFIG), "--gpus", "2", "--device", "cpu",
                           "--work_dir", str(work), "--cfg-options", *data_options(data["train"], data["val"]),
                           *SMALL, "data.imgs_per_gpu=2", "max_iters=2", "evaluation.interval=-1",
                           # BatchNorm statistics are per process (no SyncBN on CPU); frozen, the end-of-training
                           # check that both processes hold the same weights applies to them too.
                           "model.backbone.norm_eval=True"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("classes: data.train has 3 categories (apple, pear, plum)") == 1  # rank 0 logs
    meta = read_checkpoint(str(work / "latest.pth"))["meta"]
    assert meta["classes"] == NAMES and meta["config"]["model"]["bbox_head"]["num_classes"] == 3


@pytest.mark.slow
def test_tools_test_with_the_checkpoint_alone(trained, data, tmp_path):
    """tools/test.py CHECKPOINT evaluates data.test (MMDetection's meaning); here pointed at the user's val set."""
    out = tmp_path / "metrics.json"
    ann, images = data["val"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "tools/test.py", str(trained / "plum.pth"), "--eval", "segm", "--out",
                           str(out), "--cfg-options", f"data.test.ann_file={ann}", f"data.test.img_prefix={images}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    direct = tmp_path / "direct.json"  # tools/test.py is `solov2 eval` on data.test: the same figures
    assert main(["eval", str(trained / "plum.pth"), "--split", "test", "--metrics-out", str(direct), "--cfg-options",
                 f"data.test.ann_file={ann}", f"data.test.img_prefix={images}"]) == 0
    assert json.loads(out.read_text()) == json.loads(direct.read_text())


@pytest.mark.slow
def test_two_processes_stop_with_the_same_one_line_error(data, tmp_path):
    """--gpus 2: each process finds the val categories differ; the user sees one line, no worker traceback."""
    val5 = tmp_path / "val5"
    write_shapes_coco(str(val5), num_images=2, seed=1, image_size=64)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "solov2.cli", "train", str(DEMO_CONFIG), "--gpus", "2", "--device",
                           "cpu", "--work-dir", str(tmp_path / "work"), "--cfg-options",
                           *data_options(data["train"], (val5 / "annotations.json", val5 / "images")), *SMALL,
                           "max_iters=2"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1].startswith("error: data.val has 5 categories ['disc'")


@pytest.mark.slow  # a training run
def test_train_a_packaged_config_by_name(data, tmp_path):
    """The README's own-data step: `solov2 train NAME` with a packaged config's name, not a path."""
    work = tmp_path / "by_name"
    assert main(["train", "solov2_light_r18_shapes", "--work-dir", str(work), "--device", "cpu", "--cfg-options",
                 *data_options(data["train"], data["val"]), *SMALL, "max_iters=1", "evaluation.interval=-1"]) == 0
    assert (work / "solov2_light_r18_shapes.py").is_file() and (work / "latest.pth").is_file()

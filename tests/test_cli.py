"""End to end through the command line: train on built-in data, eval (COCO and Cityscapes), predict, export."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import ROOT, SEED_CONFIG, TRAINED_DATA, TRAINED_WIDTH
from PIL import Image

from solov2.cli import main

TINY = str(ROOT / "tests/data/tiny_shapes.py")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(trained_tiny, tmp_path_factory):
    """The session's trained tiny checkpoint (conftest.py: 70 iterations on 8 images, evaluated on the same 8
    images) and its metrics, and those of the same network trained for 1 iteration with learning rate 0.

    Evaluating on the training images keeps this fast: it proves that the whole pipeline (data, targets,
    losses, optimizer, post-processing, COCO evaluation) learns; `make demo` measures generalization.
    """
    work = tmp_path_factory.mktemp("train")
    data = repr(TRAINED_DATA)
    common = ["--cfg-options", f"data.train={data}", f"data.val={data}", f"data.test={data}",
              "data.imgs_per_gpu=8", "model.transform.train_scales=[(128, 128)]",
              "model.transform.test_scale=(128, 128)", "evaluation.interval=-1",
              "checkpoint_config.interval=1000"]  # 1 iteration per epoch: no checkpoint per epoch
    assert main(["train", TINY, "--work-dir", str(work / "untrained"), "--device", "cpu", *common,
                 *(f"{k}={v}" for k, v in TRAINED_WIDTH.items()), "max_iters=1", "optimizer.lr=0.0"]) == 0
    assert main(["eval", TINY, str(work / "untrained/latest.pth"), "--metrics-out", str(work / "m0.json"),
                 *common]) == 0
    assert main(["eval", TINY, str(trained_tiny), "--metrics-out", str(work / "m1.json"), *common]) == 0
    return SimpleNamespace(metrics=work, checkpoint=str(trained_tiny))


def test_training_beats_the_untrained_model(trained):
    before = json.loads((trained.metrics / "m0.json").read_text())
    after = json.loads((trained.metrics / "m1.json").read_text())
    assert {"mask_AP", "mask_AP50", "mask_AP75"} <= set(after)
    assert after["mask_AP50"] > before["mask_AP50"] + 0.2, (before, after)
    assert after["mask_AP"] > before["mask_AP"] + 0.1, (before, after)


def test_eval_of_the_optimized_and_bf16_model(trained, tmp_path):
    common = ["--cfg-options", "data.val={'image_size': 128, 'num_images': 8, 'seed': 0, 'type': 'SyntheticShapes'}",
              "model.transform.test_scale=(128, 128)"]
    plain = json.loads((trained.metrics / "m1.json").read_text())
    for extra, name in (([], "opt.json"), (["--precision", "bf16"], "bf16.json")):
        assert main(["eval", TINY, trained.checkpoint, "--metrics-out", str(tmp_path / name),
                     *extra, *common]) == 0
    optimized = json.loads((tmp_path / "opt.json").read_text())
    bf16 = json.loads((tmp_path / "bf16.json").read_text())
    assert abs(optimized["mask_AP"] - plain["mask_AP"]) < 1e-3  # float rounding only
    assert abs(bf16["mask_AP"] - plain["mask_AP"]) < 0.05 and plain["mask_AP"] > 0.1


def test_predict_writes_pictures_and_coco_json(trained, tmp_path):
    folder = tmp_path / "in" / "nested"
    folder.mkdir(parents=True)
    from solov2.data import SyntheticShapes
    image = SyntheticShapes(num_images=1, seed=0, image_size=128)[0][0].permute(1, 2, 0).numpy()
    Image.fromarray(image).save(folder / "a.png")
    out = tmp_path / "out"
    assert main(["predict", TINY, trained.checkpoint, str(tmp_path / "in"), "--out", str(out),
                 "--score-thr", "0.2", "--save-masks"]) == 0
    picture = np.asarray(Image.open(out / "nested/a.png_pred.png"))  # mirrors in/nested/a.png
    assert picture.shape == (256, 256, 3)  # a 128 px image is drawn at twice its size
    assert not np.array_equal(picture[::2, ::2], image)
    results = json.loads((out / "results.json").read_text())
    assert results and {"segmentation", "score", "category_name"} <= set(results[0])
    assert len(list((out / "nested/a.png_masks").glob("*.png"))) == len(results)


@pytest.mark.parametrize("with_postprocess", [False, True])
def test_export_from_the_command_line_gives_the_trained_models_instances(trained, tmp_path, with_postprocess):
    import torch

    from solov2 import build_model, load_config
    from solov2.checkpoint.io import load_weights
    from solov2.data import SyntheticShapes
    from solov2.deploy.runtime import load_exported
    checkpoint, out = trained.checkpoint, str(tmp_path / "model.onnx")
    args = ["export", TINY, checkpoint, "--out", out, "--input-size", "96", "96"]  # the config's test scale
    assert main(args + (["--with-postprocess"] if with_postprocess else [])) == 0
    model = build_model(load_config(TINY, TRAINED_WIDTH)).eval()
    load_weights(model, checkpoint)
    image = SyntheticShapes(num_images=1, seed=0, image_size=128)[0][0]
    with torch.no_grad():
        ref = model([image])[0]
    got = load_exported(out)([image])[0]
    assert ref["scores"].numel() > 0
    assert torch.equal(got["labels"], ref["labels"])
    torch.testing.assert_close(got["scores"], ref["scores"], atol=1e-3, rtol=0)
    assert ((got["masks"] ^ ref["masks"]).sum() / ref["masks"].sum()).item() < 0.01


def test_predict_bad_inputs_one_line(trained, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", TINY, trained.checkpoint, str(empty)]) == 1
    assert capsys.readouterr().err.strip() == f"error: {empty}: folder has no images or videos"
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    assert main(["predict", TINY, trained.checkpoint, str(bad)]) == 1
    last_line = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert last_line.startswith(f"error: {bad}: cannot read image")


def test_checkpoint_of_another_architecture_is_named(trained, tmp_path, capsys):
    # A checkpoint that carries its config is built as it was trained, whatever the config says; one without
    # (older solov2, official SOLO weights) is loaded into the config's model, and a mismatch is named.
    import torch

    from solov2.checkpoint.io import read_checkpoint
    ckpt = read_checkpoint(trained.checkpoint)
    ckpt["meta"] = {"classes": ckpt["meta"]["classes"]}
    torch.save(ckpt, tmp_path / "old.pth")
    assert main(["eval", str(SEED_CONFIG), str(tmp_path / "old.pth")]) == 1
    err = capsys.readouterr().err.strip()
    assert "does not match the model built from the config" in err and "\n" not in err


def test_cityscapes_eval_through_tools_test(tiny_cityscapes, tmp_path):
    import subprocess
    import sys
    work = tmp_path / "cs"
    opts = [f"data.train.root={tiny_cityscapes}", f"data.val.root={tiny_cityscapes}",
            f"data.test.root={tiny_cityscapes}", "model.backbone.depth=18", "model.neck.in_channels=[64,128,256,512]",
            "model.transform.train_scales=[(256, 128)]", "model.transform.test_scale=(256, 128)",
            "data.imgs_per_gpu=1", "data.workers_per_gpu=0", "evaluation.interval=-1", "max_iters=1",
            "model.pretrained=None"]
    assert main(["train", str(SEED_CONFIG), "--work-dir", str(work), "--device", "cpu", "--cfg-options", *opts]) == 0
    out = tmp_path / "metrics.json"
    done = subprocess.run([sys.executable, "tools/test.py", str(SEED_CONFIG), str(work / "latest.pth"),
                           "--eval", "cityscapes", "--out", str(out), "--cfg-options", *opts], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads(out.read_text())
    assert {"mask_AP", "mask_AP50", "AP_person", "AP_car"} <= set(metrics)


def test_predict_on_a_video_and_a_broken_one(trained, tmp_path, capsys):
    import cv2

    from solov2.data import SyntheticShapes
    frames = [SyntheticShapes(num_images=3, seed=0, image_size=128)[i][0].permute(1, 2, 0).numpy()
              for i in range(3)]
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (128, 128))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    out = tmp_path / "out"
    assert main(["predict", TINY, trained.checkpoint, str(video), "--out", str(out)]) == 0
    result = cv2.VideoCapture(str(out / "clip.mp4_pred.mp4"))
    assert int(result.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    assert main(["predict", TINY, trained.checkpoint, str(broken), "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: {broken}: cannot open video"


# ----------------------------------------------------------------------------- predict on files as people have them
@pytest.fixture(scope="module")
def detecting_checkpoint(tmp_path_factory):
    """Random weights with every class scoring high everywhere: many detections, no training needed."""
    import torch

    from solov2 import build_model, load_config
    from solov2.checkpoint.io import save_checkpoint
    torch.manual_seed(0)
    model = build_model(load_config(TINY))
    torch.nn.init.constant_(model.bbox_head.solo_cate.bias, 2.0)
    path = tmp_path_factory.mktemp("ckpt") / "model.pth"
    save_checkpoint(str(path), model, meta={"classes": ["disc", "rectangle", "triangle", "ring", "star"]})
    return str(path)


def _photos(root, names, size=(48, 64)):
    rng = np.random.default_rng(0)
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / name)


def test_predict_mirrors_the_input_tree_and_keeps_extensions(detecting_checkpoint, tmp_path):
    photos = tmp_path / "photos"
    _photos(photos, ["cam1/frame.png", "cam2/frame.png", "img.webp", "img.bmp"])
    out = tmp_path / "out"
    assert main(["predict", TINY, detecting_checkpoint, str(photos), "--out", str(out), "--save-masks"]) == 0
    for name in ("cam1/frame.png", "cam2/frame.png", "img.webp", "img.bmp"):
        assert (out / f"{name}_pred.png").is_file() and (out / f"{name}_masks").is_dir()
    results = json.loads((out / "results.json").read_text())
    assert {r["file_name"] for r in results} == {str(photos / n) for n in ("cam1/frame.png", "cam2/frame.png",
                                                                           "img.webp", "img.bmp")}
    assert sorted({r["image_id"] for r in results}) == [1, 2, 3, 4]  # no --ann: 1, 2, ... in input order
    assert {r["category_id"] for r in results} <= {1, 2, 3, 4, 5}  # no cat_ids in the checkpoint: label + 1
    # two files with the same name given directly: the second gets a suffix instead of overwriting
    out2 = tmp_path / "out2"
    assert main(["predict", TINY, detecting_checkpoint, str(photos / "cam1/frame.png"),
                 str(photos / "cam2/frame.png"), "--out", str(out2), "--no-save-json"]) == 0
    assert (out2 / "frame.png_pred.png").is_file() and (out2 / "frame.png_2_pred.png").is_file()
    assert not (out2 / "results.json").exists()  # --no-save-json


def test_predict_skips_an_unreadable_file_and_finishes(detecting_checkpoint, tmp_path, capsys):
    photos = tmp_path / "photos"
    _photos(photos, ["a.png", "c.png"])
    (photos / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "out"
    assert main(["predict", TINY, detecting_checkpoint, str(photos), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"warning: {photos / 'b.jpg'}: cannot read image" in err
    assert err.strip().splitlines()[-1] == f"skipped 1 unreadable input(s): {photos / 'b.jpg'}"
    assert (out / "a.png_pred.png").is_file() and (out / "c.png_pred.png").is_file()
    assert {r["file_name"] for r in json.loads((out / "results.json").read_text())} == {str(photos / "a.png"),
                                                                                         str(photos / "c.png")}


def test_predict_results_load_against_the_users_annotations(detecting_checkpoint, tmp_path):
    import contextlib
    import io

    from pycocotools.coco import COCO
    images = tmp_path / "data/images"
    _photos(images, ["cam1/frame.png", "cam2/frame.png", "extra.png"])
    categories = [{"id": c, "name": n} for c, n in zip((3, 5, 10, 11, 12), ("disc", "rectangle", "triangle",
                                                                             "ring", "star"))]
    ann = tmp_path / "data/val.json"
    ann.write_text(json.dumps({
        "images": [{"id": "img_b", "file_name": "cam2/frame.png", "height": 48, "width": 64},
                   {"id": "img_a", "file_name": "cam1/frame.png", "height": 48, "width": 64}],
        "annotations": [{"id": 1, "image_id": "img_a", "category_id": 3, "iscrowd": 0, "area": 100.0,
                         "bbox": [0, 0, 10, 10], "segmentation": [[0, 0, 10, 0, 10, 10, 0, 10]]}],
        "categories": categories}))
    out = tmp_path / "out"
    assert main(["predict", TINY, detecting_checkpoint, str(images), "--out", str(out), "--ann", str(ann)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert {r["image_id"] for r in results} == {"img_a", "img_b"}  # extra.png is not in --ann: left out
    assert {r["category_id"] for r in results} <= {3, 5, 10, 11, 12}
    by_id = {r["image_id"]: r["file_name"] for r in results}
    assert by_id == {"img_a": str(images / "cam1/frame.png"), "img_b": str(images / "cam2/frame.png")}
    with contextlib.redirect_stdout(io.StringIO()):
        detections = COCO(str(ann)).loadRes(results)
    assert len(detections.anns) == len(results) > 0


def test_predict_uses_the_checkpoints_category_ids(detecting_checkpoint, tmp_path):
    import torch

    from solov2.checkpoint.io import read_checkpoint
    ckpt = read_checkpoint(detecting_checkpoint)
    ckpt["meta"]["cat_ids"] = [7, 8, 9, 20, 21]  # what training stores: the training data's category ids
    torch.save(ckpt, tmp_path / "ids.pth")
    _photos(tmp_path / "in", ["a.png"])
    assert main(["predict", TINY, str(tmp_path / "ids.pth"), str(tmp_path / "in"), "--out", str(tmp_path / "out")]) == 0
    results = json.loads((tmp_path / "out/results.json").read_text())
    assert results and {r["category_id"] for r in results} <= {7, 8, 9, 20, 21}
    names = dict(zip([7, 8, 9, 20, 21], ["disc", "rectangle", "triangle", "ring", "star"]))
    assert all(names[r["category_id"]] == r["category_name"] for r in results)


def test_eval_reads_the_validation_set_by_default(detecting_checkpoint, tmp_path, capsys):
    val = "data.val={'type': 'SyntheticShapes', 'num_images': 2, 'seed': 1, 'image_size': 96}"
    test = (f"data.test={{'type': 'CocoDataset', 'ann_file': '{tmp_path}/instances_val2017.json', "
            f"'img_prefix': '{tmp_path}'}}")
    metrics = tmp_path / "m.json"
    assert main(["eval", TINY, detecting_checkpoint, "--metrics-out", str(metrics), "--cfg-options", val, test]) == 0
    assert "mask_AP" in json.loads(metrics.read_text())
    assert main(["eval", TINY, detecting_checkpoint, "--split", "test", "--cfg-options", val, test]) == 1
    missing = f"error: {tmp_path}/instances_val2017.json: annotation file not found"
    assert capsys.readouterr().err.strip().endswith(missing)
    assert main(["eval", TINY, detecting_checkpoint, "--cfg-options", "data.val=None"]) == 1
    assert "data.val is not set" in capsys.readouterr().err


def test_predict_video_gives_per_frame_results(detecting_checkpoint, tmp_path):
    import cv2
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (64, 48))
    for k in range(3):
        writer.write(np.full((48, 64, 3), 60 * k, np.uint8))
    writer.release()
    assert main(["predict", TINY, detecting_checkpoint, str(video), "--out", str(tmp_path / "out")]) == 0
    results = json.loads((tmp_path / "out/results.json").read_text())
    assert {r["image_id"] for r in results} == {0, 1, 2}  # image_id = frame index
    assert all(r["file_name"] == f"{video}#{r['frame']}" and r["frame"] == r["image_id"] for r in results)


def test_predict_in_tiles_with_boxes(detecting_checkpoint, tmp_path):
    photos = tmp_path / "photos"
    _photos(photos, ["big.png"], size=(300, 420))
    out, plain = tmp_path / "tiled", tmp_path / "plain"
    assert main(["predict", TINY, detecting_checkpoint, str(photos / "big.png"), "--out", str(out),
                 "--tile", "128", "--overlap", "32", "--boxes"]) == 0
    assert main(["predict", TINY, detecting_checkpoint, str(photos / "big.png"), "--out", str(plain),
                 "--tile", "128", "--overlap", "32"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results and all(len(r["bbox"]) == 4 and r["bbox"][0] + r["bbox"][2] <= 420 for r in results)
    boxed = np.asarray(Image.open(out / "big.png_pred.png"))
    assert boxed.shape == (300, 420, 3)
    assert (boxed != np.asarray(Image.open(plain / "big.png_pred.png"))).any()  # the boxes' outlines

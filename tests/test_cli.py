"""End to end through the command line: train on built-in data, eval (COCO and Cityscapes), predict, export."""
import json

import numpy as np
import pytest
from PIL import Image

from helpers import ROOT, SEED_CONFIG

from solov2.cli import main

TINY = str(ROOT / "tests/data/tiny_shapes.py")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny config trained on 8 images, evaluated on the same 8 images, and the untrained model's metrics.

    Evaluating on the training images keeps this fast: it proves that the whole pipeline (data, targets,
    losses, optimizer, post-processing, COCO evaluation) learns; `make demo` measures generalization.
    """
    work = tmp_path_factory.mktemp("train")
    data = {"image_size": 128, "num_images": 8, "seed": 0, "type": "SyntheticShapes"}
    common = ["--cfg-options", f"data.train={data}", f"data.val={data}", f"data.test={data}",
              "data.imgs_per_gpu=8", "model.transform.train_scales=[(128, 128)]",
              "model.transform.test_scale=(128, 128)", "evaluation.interval=-1",
              "checkpoint_config.interval=1000"]  # 1 iteration per epoch: no checkpoint per epoch
    assert main(["train", TINY, "--work-dir", str(work / "untrained"), "--device", "cpu",
                 *common, "max_iters=1", "optimizer.lr=0.0"]) == 0
    assert main(["eval", TINY, str(work / "untrained/latest.pth"), "--metrics-out", str(work / "m0.json"),
                 *common]) == 0
    assert main(["train", TINY, "--work-dir", str(work / "run"), "--device", "cpu", *common, "max_iters=70",
                 "optimizer={'type': 'AdamW', 'lr': 0.002, 'weight_decay': 0.0001}", "lr_config.step=[1000]",
                 "total_epochs=1000", "lr_config.warmup_iters=10"]) == 0
    assert main(["eval", TINY, str(work / "run/latest.pth"), "--metrics-out", str(work / "m1.json"), *common]) == 0
    return work


def test_training_beats_the_untrained_model(trained):
    before = json.loads((trained / "m0.json").read_text())
    after = json.loads((trained / "m1.json").read_text())
    assert {"mask_AP", "mask_AP50", "mask_AP75"} <= set(after)
    assert all(0.0 <= after[k] <= 1.0 for k in ("mask_AP", "mask_AP50", "mask_AP75"))
    assert after["mask_AP50"] > before["mask_AP50"] + 0.2, (before, after)
    assert after["mask_AP"] > before["mask_AP"] + 0.1, (before, after)


def test_eval_of_the_optimized_and_bf16_model(trained, tmp_path):
    common = ["--cfg-options", "data.val={'image_size': 128, 'num_images': 8, 'seed': 0, 'type': 'SyntheticShapes'}",
              "model.transform.test_scale=(128, 128)"]
    plain = json.loads((trained / "m1.json").read_text())
    for extra, name in ((["--optimize"], "opt.json"), (["--optimize", "--precision", "bf16"], "bf16.json")):
        assert main(["eval", TINY, str(trained / "run/latest.pth"), "--metrics-out", str(tmp_path / name),
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
    assert main(["predict", TINY, str(trained / "run/latest.pth"), str(tmp_path / "in"), "--out", str(out),
                 "--score-thr", "0.2", "--save-masks"]) == 0
    picture = np.asarray(Image.open(out / "a_pred.png"))
    assert picture.shape == (256, 256, 3)  # a 128 px image is drawn at twice its size
    assert not np.array_equal(picture[::2, ::2], image)
    results = json.loads((out / "results.json").read_text())
    assert results and {"segmentation", "score", "category_name"} <= set(results[0])
    assert len(list((out / "a_masks").glob("*.png"))) == len(results)


@pytest.mark.parametrize("with_postprocess", [False, True])
def test_export_from_the_command_line_gives_the_trained_models_instances(trained, tmp_path, with_postprocess):
    import torch
    from solov2 import build_model, load_config
    from solov2.data import SyntheticShapes
    from solov2.engine.checkpoint import load_weights
    from solov2.export import load_exported
    checkpoint, out = str(trained / "run/latest.pth"), str(tmp_path / "model.onnx")
    args = ["export", TINY, checkpoint, "--out", out, "--input-size", "96", "96"]  # the config's test scale
    assert main(args + (["--with-postprocess"] if with_postprocess else [])) == 0
    model = build_model(load_config(TINY)).eval()
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
    assert main(["predict", TINY, str(trained / "run/latest.pth"), str(empty)]) == 1
    assert capsys.readouterr().err.strip() == f"error: {empty}: folder has no images or videos"
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    assert main(["predict", TINY, str(trained / "run/latest.pth"), str(bad)]) == 1
    last_line = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert last_line.startswith(f"error: {bad}: cannot read image")


def test_checkpoint_of_another_architecture_is_named(trained, tmp_path, capsys):
    # A checkpoint that carries its config is built as it was trained, whatever the config says; one without
    # (older solov2, official SOLO weights) is loaded into the config's model, and a mismatch is named.
    import torch
    from solov2.engine.checkpoint import read_checkpoint
    ckpt = read_checkpoint(str(trained / "run/latest.pth"))
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
            "data.imgs_per_gpu=1", "data.workers_per_gpu=0", "evaluation.interval=-1", "max_iters=1"]
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
    assert main(["predict", TINY, str(trained / "run/latest.pth"), str(video), "--out", str(out)]) == 0
    result = cv2.VideoCapture(str(out / "clip_pred.mp4"))
    assert int(result.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    assert main(["predict", TINY, str(trained / "run/latest.pth"), str(broken), "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: {broken}: cannot open video"

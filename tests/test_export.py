"""ONNX / TorchScript export: the exported file gives the PyTorch model's instances (same post-processing),
for the image alone, whatever the size the graph was exported at."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from helpers import plant_detections  # noqa: E402

from solov2 import build_model, load_config  # noqa: E402
from solov2.deploy.export import SOLOv2ExportWrapper, export_onnx, export_torchscript  # noqa: E402
from solov2.deploy.runtime import load_exported, preprocess_for_export, quiet_deprecations  # noqa: E402
from solov2.errors import ExportError

CONFIG = Path(__file__).resolve().parents[1] / "configs/solov2/cityscapes/solov2_light_448_r50_fpn_2gpu_3x.py"
TEST_SCALE = (384, 224)  # (long, short): a quarter of the config's pixels keeps the test fast
INPUT_SIZE = (224, 384)
# TEST_SCALE resizes 300x512 to 224x382: the export input is padded on the right, and masks come back
# at 300x512, so cropping and both resizes of the post-processing are exercised.
IMAGE_SIZE = (300, 512)
# Several sizes and aspect ratios (issue 14): landscape, square, tall, odd sizes; at TEST_SCALE they are resized
# to 224x358, 224x224, 384x154, 75x224 (padded to 224x384, 224x224, 384x160, 96x224).
SIZES = [(160, 256), (256, 256), (400, 160), (97, 290)]
OPTIONS = {"model.backbone.depth": 18, "model.neck.in_channels": [64, 128, 256, 512],
           "model.transform.test_scale": TEST_SCALE}


@pytest.fixture(scope="module")
def model():
    # ResNet-18 keeps the test fast; its C2..C5 have 64..512 channels.
    cfg = load_config(CONFIG, OPTIONS)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    plant_detections(model)
    return model


def _image(size, seed=0):
    """A smooth random RGB image (blobs rather than pixel noise, so masks are regions)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, size[0] // 32, size[1] // 32, generator=g)
    return (F.interpolate(low, size=size, mode="bilinear", align_corners=False)[0] * 255).to(torch.uint8)


def _mask_iou(a, b):
    inter = (a & b).sum().item()
    union = (a | b).sum().item()
    return 1.0 if union == 0 else inter / union


def _assert_same_instances(got, ref):
    assert ref["scores"].numel() > 0, "the planted detections did not survive post-processing"
    assert got["masks"].shape == ref["masks"].shape
    assert torch.equal(got["labels"], ref["labels"])
    torch.testing.assert_close(got["scores"], ref["scores"], atol=1e-3, rtol=0)
    for g, r in zip(got["masks"], ref["masks"]):
        assert _mask_iou(g, r) >= 0.99


@pytest.fixture(scope="module")
def reference(model):
    image = _image(IMAGE_SIZE)
    with torch.no_grad():
        return image, model([image])[0]


def test_preprocess_matches_model_transform(model, reference):
    image, _ = reference
    tensor, meta = preprocess_for_export(model, image, INPUT_SIZE)
    image_list = model.transform([image])[0]
    assert torch.equal(tensor, image_list.tensors)
    assert meta == {"image_size": image_list.image_sizes[0], "original_size": IMAGE_SIZE, "input_size": INPUT_SIZE}


def test_planted_detections(reference):
    _, ref = reference
    assert ref["masks"].shape[1:] == IMAGE_SIZE
    assert ref["scores"].numel() >= 3
    assert ref["masks"].flatten(1).any(1).all()


@pytest.mark.slow  # export + runtime parity (the fast set keeps test_static_export_gives_the_single_image_answer)
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_matches_pytorch(model, reference, tmp_path, fmt):
    image, ref = reference
    if fmt == "onnx":
        path = export_onnx(model, str(tmp_path / "solov2.onnx"), input_size=INPUT_SIZE)
    else:
        path = export_torchscript(model, str(tmp_path / "solov2.pt"), input_size=INPUT_SIZE)
    exported = load_exported(path)
    _assert_same_instances(exported([image])[0], ref)

    # The raw graph outputs agree with the network's too, not only after thresholds.
    tensor, meta = preprocess_for_export(model, image, INPUT_SIZE)
    cate_scores, kernels, mask_feat = exported.run(tensor, meta["image_size"])
    with torch.no_grad():
        cate_preds, kernel_preds, mask_feats = model.forward_features(tensor)
    assert cate_scores.shape == (sum(s * s for s in model.bbox_head.num_grids), model.num_classes)
    torch.testing.assert_close(kernels, model.bbox_head.flatten_kernels(kernel_preds)[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(mask_feat, mask_feats[0], atol=1e-4, rtol=1e-4)

    with pytest.raises(ExportError, match=r"solov2\.(onnx|pt).*224x384.*got 256x384"):
        exported.run(torch.zeros(1, 3, 256, 384))


@pytest.mark.slow  # export + runtime parity
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_with_postprocess_in_the_graph(model, reference, tmp_path, fmt):
    image, ref = reference
    if fmt == "onnx":
        path = export_onnx(model, str(tmp_path / "full.onnx"), input_size=INPUT_SIZE, with_postprocess=True)
    else:
        path = export_torchscript(model, str(tmp_path / "full.pt"), input_size=INPUT_SIZE, with_postprocess=True)
    exported = load_exported(path)
    assert exported.with_postprocess
    _assert_same_instances(exported([image])[0], ref)
    # The graph's own outputs: fixed size, padded with score 0, the planted instances first.
    tensor, meta = preprocess_for_export(model, image, INPUT_SIZE)
    scores, labels, mask_probs = exported.run(tensor, meta["image_size"])
    d = model.test_cfg.max_per_img
    assert scores.shape == labels.shape == (d,) and mask_probs.shape == (d, INPUT_SIZE[0] // 4, INPUT_SIZE[1] // 4)
    assert (scores > 0).sum().item() == ref["scores"].numel()
    # Another image (the graph was traced on zeros): still the model's instances.
    other = _image(IMAGE_SIZE, seed=3)
    with torch.no_grad():
        _assert_same_instances(exported([other])[0], model([other])[0])


@pytest.mark.slow  # export + runtime parity
@pytest.mark.parametrize("with_postprocess", [False, True])
def test_dynamic_onnx_other_size(model, tmp_path, with_postprocess):
    # Portrait: resized to 373x224 and padded to 384x224, a shape the graph was not traced with.
    image = _image((400, 240), seed=1)
    with torch.no_grad():
        ref = model([image])[0]
    exported = load_exported(export_onnx(model, str(tmp_path / "dyn.onnx"), input_size=INPUT_SIZE, dynamic=True,
                                         with_postprocess=with_postprocess))
    assert exported.input_size is None
    _assert_same_instances(exported([image])[0], ref)
    with pytest.raises(ExportError, match=r"dyn\.onnx: a dynamic graph takes the image padded to its own size "
                                          r"384x224 for image_size \(373, 224\), got 416x224"):
        exported.run(torch.zeros(1, 3, 416, 224), (373, 224))


def test_bad_input_size_at_export(model, tmp_path):
    with pytest.raises(ValueError, match="multiples of 32"):
        export_onnx(model, str(tmp_path / "bad.onnx"), input_size=(230, 384))


@pytest.mark.parametrize("size", [SIZES[0], *(pytest.param(s, marks=pytest.mark.slow) for s in SIZES[1:])])
def test_larger_input_gives_the_single_image_outputs(size):
    """The graph's computation in PyTorch: an image padded far beyond its own padded size, with its size
    given, gives the outputs of the image alone (no planted scores: the category branch is compared too)."""
    torch.manual_seed(1)
    model = build_model(load_config(CONFIG, OPTIONS)).eval()
    image = _image(size, seed=2)
    alone, meta = preprocess_for_export(model, image, None)
    padded, _ = preprocess_for_export(model, image, (416, 448))
    assert padded.shape[-2:] != alone.shape[-2:]
    image_size = torch.tensor(meta["image_size"])
    with torch.no_grad():
        ref = model.predict_cells(alone, [meta["image_size"]])
        with SOLOv2ExportWrapper(model) as wrapper:
            got = wrapper(padded, image_size)
        unmasked = wrapper(padded, image_size)  # outside the context: only the crops, no zeroing in the FPN
    for g, r in zip(got, ref):
        assert g.shape == r[0].shape
        torch.testing.assert_close(g, r[0], atol=1e-4, rtol=1e-4)
    # What the zeroing is for: without it the backbone and FPN see image zeros, not conv padding, beyond
    # the region, and features near its border change.
    assert max((u - r[0]).abs().max().item() for u, r in zip(unmasked, ref)) > 1e-3


@pytest.fixture(scope="module")
def static_onnx(model, tmp_path_factory):
    """A static graph at the default input size."""
    return load_exported(export_onnx(model, str(tmp_path_factory.mktemp("static") / "static.onnx")))


def test_default_static_size_holds_any_aspect_ratio(static_onnx):
    assert static_onnx.input_size == (384, 384)  # TEST_SCALE's long side, either way round


@pytest.mark.parametrize("size", [SIZES[0], pytest.param(SIZES[1], marks=pytest.mark.slow),
                                  pytest.param(SIZES[2], marks=pytest.mark.slow),
                                  pytest.param(SIZES[3], marks=pytest.mark.slow)])
def test_static_export_gives_the_single_image_answer(model, static_onnx, size):
    image = _image(size, seed=4)
    with torch.no_grad():
        ref = model([image])[0]
    _assert_same_instances(static_onnx([image])[0], ref)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("with_postprocess", [False, True])
def test_export_size_does_not_change_the_answer(model, tmp_path, fmt, with_postprocess):
    """A static graph larger than every image, and one of exactly the default size: the same instances
    as the model on each image alone."""
    export = export_onnx if fmt == "onnx" else export_torchscript
    exported = load_exported(export(model, str(tmp_path / f"big.{'onnx' if fmt == 'onnx' else 'pt'}"),
                                    input_size=(448, 512), with_postprocess=with_postprocess))
    for k, size in enumerate(SIZES):
        image = _image(size, seed=10 + k)
        with torch.no_grad():
            ref = model([image])[0]
        _assert_same_instances(exported([image])[0], ref)


def _onnx_props(path):
    import onnx
    return {p.key: p.value for p in onnx.load(path).metadata_props}


@pytest.mark.slow  # exports and runs the graph
def test_metadata_holds_class_names_and_thresholds(model, tmp_path):
    names = [f"thing{i}" for i in range(model.num_classes)]
    path = export_onnx(model, str(tmp_path / "m.onnx"), input_size=INPUT_SIZE, class_names=names)
    props = _onnx_props(path)
    assert json.loads(props["class_names"]) == names
    assert float(props["score_thr"]) == model.test_cfg.score_thr
    assert float(props["mask_thr"]) == model.test_cfg.mask_thr
    meta = json.loads(props["solov2"])
    assert meta["class_names"] == names and meta["transform"]["mean"] == list(model.transform.mean)
    assert load_exported(path).class_names == names

    ts = export_torchscript(model, str(tmp_path / "m.pt"), input_size=INPUT_SIZE, class_names=names)
    extra = {"class_names": "", "score_thr": ""}
    with quiet_deprecations():
        torch.jit.load(ts, _extra_files=extra)
    assert json.loads(extra["class_names"]) == names and float(extra["score_thr"]) == model.test_cfg.score_thr
    assert load_exported(ts).class_names == names == load_exported(ts).label_names
    unnamed = load_exported(export_onnx(model, str(tmp_path / "u.onnx"), input_size=INPUT_SIZE))
    assert unnamed.class_names is None
    assert unnamed.label_names == [f"class_{i}" for i in range(model.num_classes)]

    with pytest.raises(ValueError, match="2 names for a model of 8 classes"):
        export_onnx(model, str(tmp_path / "bad.onnx"), input_size=INPUT_SIZE, class_names=["a", "b"])


@pytest.mark.slow  # exports and runs the graph
def test_export_command_takes_test_time_settings(model, tmp_path):
    from solov2.checkpoint.io import save_checkpoint
    from solov2.cli import main
    names = [f"thing{i}" for i in range(model.num_classes)]
    checkpoint = str(tmp_path / "model.pth")
    save_checkpoint(checkpoint, model, meta={"classes": names})
    out = str(tmp_path / "cli.onnx")
    options = [f"{k}={v!r}".replace(" ", "") for k, v in OPTIONS.items()] + ["model.test_cfg.score_thr=0.25"]
    assert main(["export", str(CONFIG), checkpoint, "--out", out, "--cfg-options", *options]) == 0
    props = _onnx_props(out)
    assert float(props["score_thr"]) == 0.25 and json.loads(props["class_names"]) == names
    exported = load_exported(out)
    assert exported.test_cfg.score_thr == 0.25 and exported.input_size == (384, 384)


@pytest.mark.slow  # exports and runs the graph
def test_readme_deployment_contract(model, tmp_path):
    """docs/deployment.md, the contract's steps 2-7, with onnxruntime, NumPy and a bilinear resize only
    (no solov2 code), read from the file's metadata: the model's instances for a tall image."""
    import numpy as np
    import onnxruntime as ort
    path = export_onnx(model, str(tmp_path / "deploy.onnx"), with_postprocess=True)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    props = session.get_modelmeta().custom_metadata_map
    meta = json.loads(props["solov2"])

    def resize(x, size):  # bilinear, half-pixel centres, no antialiasing; x (C, H, W) float32
        return F.interpolate(torch.from_numpy(x)[None], size=size, mode="bilinear", align_corners=False)[0].numpy()

    image = _image((400, 160), seed=7)
    rgb = image.numpy().astype(np.float32)  # (3, H0, W0) RGB
    h0, w0 = rgb.shape[1:]
    long_side, short_side = max(meta["transform"]["test_scale"]), min(meta["transform"]["test_scale"])
    f = min(long_side / max(h0, w0), short_side / min(h0, w0))
    h, w = int(np.floor(h0 * f + 0.5)), int(np.floor(w0 * f + 0.5))
    mean = np.array(meta["transform"]["mean"], np.float32)[:, None, None]
    std = np.array(meta["transform"]["std"], np.float32)[:, None, None]
    x = np.zeros((1, 3, *meta["input_size"]), np.float32)
    x[0, :, :h, :w] = (resize(rgb, (h, w)) - mean) / std
    scores, labels, mask_probs = session.run(None, {"input": x, "image_size": np.array([h, w], np.int64)})
    hi, wi = -(-h // 32) * 32, -(-w // 32) * 32
    assert mask_probs.shape[1:] == (hi // 4, wi // 4)
    keep = scores > 0
    masks = resize(resize(mask_probs[keep], (hi, wi))[:, :h, :w], (h0, w0)) > float(props["mask_thr"])

    with torch.no_grad():
        ref = model([image])[0]
    got = {"scores": torch.from_numpy(scores[keep]), "labels": torch.from_numpy(labels[keep]),
           "masks": torch.from_numpy(masks)}
    _assert_same_instances(got, ref)


@pytest.mark.slow  # exports and runs the graph
def test_torchscript_file_stands_in_for_the_checkpoint(model, reference, tmp_path):
    """A TorchScript file runs wherever an exported file does (Predictor, predict, eval), told from a checkpoint
    by its contents, whatever its suffix."""
    from solov2 import Predictor
    from solov2.checkpoint.io import save_checkpoint
    from solov2.deploy.contract import is_exported, is_torchscript

    image, ref = reference
    ts = export_torchscript(model, str(tmp_path / "model.ts"), input_size=INPUT_SIZE, class_names=[f"c{i}" for i in
                                                                                                      range(8)])
    save_checkpoint(str(tmp_path / "model.pth"), model)
    assert is_torchscript(ts) and is_exported(ts)
    assert not is_torchscript(tmp_path / "model.pth") and not is_exported(tmp_path / "model.pth")
    predictor = Predictor(ts, score_thr=0.0)
    assert predictor.backend == "torchscript" and predictor.class_names[0] == "c0"
    got = predictor(image.permute(1, 2, 0).numpy())
    np.testing.assert_array_equal(got["labels"], ref["labels"].numpy())
    np.testing.assert_allclose(got["scores"], ref["scores"].numpy(), atol=1e-3, rtol=0)

"""ONNX / TorchScript export: the exported file gives the PyTorch model's instances (same post-processing)."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from helpers import plant_detections  # noqa: E402

from solov2 import build_model, load_config  # noqa: E402
from solov2.export import (ExportError, export_onnx, export_torchscript, load_exported,  # noqa: E402
                           preprocess_for_export)

CONFIG = Path(__file__).resolve().parents[1] / "configs/solov2/cityscapes/solov2_light_448_r50_fpn_2gpu_3x.py"
TEST_SCALE = (384, 224)  # (long, short): a quarter of the config's pixels keeps the test fast
INPUT_SIZE = (224, 384)
# TEST_SCALE resizes 300x512 to 224x382: the export input is padded on the right, and masks come back
# at 300x512, so cropping and both resizes of the post-processing are exercised.
IMAGE_SIZE = (300, 512)


@pytest.fixture(scope="module")
def model():
    # ResNet-18 keeps the test fast; its C2..C5 have 64..512 channels.
    cfg = load_config(CONFIG, {"model.backbone.depth": 18, "model.neck.in_channels": [64, 128, 256, 512],
                               "model.transform.test_scale": TEST_SCALE})
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


def test_bad_input_size_at_export(model, tmp_path):
    with pytest.raises(ValueError, match="multiples of 32"):
        export_onnx(model, str(tmp_path / "bad.onnx"), input_size=(230, 384))

"""solov2.Predictor: inputs, outputs, and that its default speedups and bf16 keep the instances."""
import importlib.util

import numpy as np
import pytest
import torch
from helpers import CITYSCAPES_CLASSES, SEED_CONFIG, assert_same_instances, plant_detections, smooth_image
from PIL import Image

from solov2 import Predictor, build_model, load_config
from solov2.checkpoint.io import save_checkpoint
from solov2.inference.winograd import WinogradConv2d, nnpack_available
from solov2.postprocess import masks_to_boxes

CLASSES = CITYSCAPES_CLASSES
# ResNet-18 for speed; a 256x448 network input makes the 1/4-scale maps 64x112, large enough for the
# FPN's Winograd convolutions to run (WinogradConv2d.min_pixels).
OPTIONS = {"model.backbone.depth": 18, "model.neck.in_channels": [64, 128, 256, 512],
           "model.transform.test_scale": (448, 256)}
IMAGE_SIZE = (300, 520)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(load_config(SEED_CONFIG, OPTIONS))
    plant_detections(model).remove()  # the planted bias goes into the checkpoint; hooks are added per test
    path = tmp_path_factory.mktemp("predictor") / "model.pth"
    save_checkpoint(str(path), model, meta={"classes": CLASSES})
    return str(path)


def _predictor(checkpoint, **kwargs):
    predictor = Predictor(load_config(SEED_CONFIG, OPTIONS), checkpoint, score_thr=0.05, **kwargs)
    plant_detections(predictor.model)
    return predictor


def _image(seed=0, size=IMAGE_SIZE):
    return smooth_image(seed, size)




@pytest.fixture(scope="module")
def reference(checkpoint):
    return _predictor(checkpoint, optimize=False)(_image())


def test_inputs_and_outputs(checkpoint, reference, tmp_path):
    predictor = _predictor(checkpoint, optimize=False)
    image = _image()
    path = tmp_path / "image.png"
    Image.fromarray(image).save(path)
    from_path, from_list = predictor(str(path)), predictor([image, _image(1)])
    assert isinstance(from_list, list) and len(from_list) == 2
    for result in (reference, from_path, from_list[0]):
        assert result["masks"].dtype == np.bool_ and result["masks"].shape[1:] == IMAGE_SIZE
        assert result["labels"].dtype == np.int64 and result["scores"].dtype == np.float32
        assert result["class_names"] == [CLASSES[i] for i in result["labels"]]
        assert np.all(np.diff(result["scores"]) <= 0)
        assert result["boxes"].dtype == np.float32 and result["boxes"].shape == (len(result["masks"]), 4)
        np.testing.assert_array_equal(result["boxes"], masks_to_boxes(torch.from_numpy(result["masks"])).numpy())
    assert_same_instances(from_path, reference, 1e-6, 1.0)
    assert_same_instances(from_list[0], reference, 1e-5, 0.999)  # batched with another image: padding
    picture = predictor.draw(image, reference)  # the image's size (over 256 px), the instances coloured in
    assert picture.shape == image.shape and picture.dtype == np.uint8
    inside = reference["masks"].any(0)
    assert (picture[inside] != image[inside]).any(-1).mean() > 0.9
    boxed = predictor.draw(image, reference, boxes=True)  # the boxes' outlines on top
    x1, y1, x2, y2 = reference["boxes"][0].astype(int)
    assert (boxed[y1:y2, x1] != picture[y1:y2, x1]).any(-1).mean() > 0.5
    nothing = {"masks": np.zeros((0, *IMAGE_SIZE), bool), "labels": np.zeros(0, np.int64),
               "scores": np.zeros(0, np.float32), "boxes": np.zeros((0, 4), np.float32)}
    np.testing.assert_array_equal(predictor.draw(image, nothing), image)  # no instance: the image unchanged
    with pytest.raises(ValueError, match="uint8 RGB array"):
        predictor(image.astype(np.float32))


def test_draw_returns_the_images_size_unless_asked_to_enlarge(checkpoint):
    predictor = _predictor(checkpoint, optimize=False)
    small = _image(size=(96, 160))
    mask = np.zeros((1, 96, 160), bool)
    mask[0, 20:60, 30:90] = True
    result = {"masks": mask, "labels": np.array([2]), "scores": np.array([0.9], np.float32)}
    picture = predictor.draw(small, result)  # (H, W, 3), as the docstring and the README say
    assert picture.shape == small.shape and picture.dtype == np.uint8
    assert (picture[mask[0]] != small[mask[0]]).any(-1).mean() > 0.9 and np.array_equal(picture[0], small[0])
    assert predictor.draw(small, result, min_side=256).shape == (288, 480, 3)  # 3x: the shorter side reaches 256


@pytest.mark.slow  # end to end on a batch and each image alone
def test_results_do_not_depend_on_the_batch(checkpoint):
    # Landscape, square, tall and the reference size: four different padded sizes in one batch.
    predictor = _predictor(checkpoint)
    images = [_image(2, (160, 256)), _image(3, (256, 256)), _image(4, (420, 180)), _image(5)]
    together = predictor(images)
    for image, got in zip(images, together):
        assert_same_instances(got, predictor(image), 1e-3, 0.99)
    a, b = images[0], images[2]
    assert_same_instances(predictor([a, b])[1], predictor([b, b])[0], 1e-3, 0.99)


def test_optimized_default_gives_the_same_instances(checkpoint, reference, monkeypatch):
    calls = []
    nnpack = torch._nnpack_spatial_convolution
    monkeypatch.setattr(torch, "_nnpack_spatial_convolution", lambda *a: calls.append(a[0].shape) or nnpack(*a))
    predictor = _predictor(checkpoint)  # optimize=True is the default
    assert any(isinstance(m, WinogradConv2d) for m in predictor.model.modules())
    result = predictor(_image())
    # The FPN's 1/4-scale conv and the mask branch's first conv run on NNPACK where this build has it.
    assert (len(calls) >= 2) == nnpack_available()
    assert_same_instances(result, reference, 1e-4, 0.99)


def test_bf16_is_close_to_fp32(checkpoint, reference):
    predictor = _predictor(checkpoint, precision="bf16")
    assert predictor.model.backbone.conv1.weight.dtype == torch.bfloat16  # stored so, not cast on every call
    assert_same_instances(predictor(_image()), reference, 0.01, 0.97)  # measured: 0.0024, 0.990


@pytest.mark.slow  # export + onnxruntime parity
def test_onnxruntime_backend_gives_the_same_instances(checkpoint, reference):
    pytest.importorskip("onnxruntime")
    predictor = _predictor(checkpoint, backend="onnxruntime")  # exported on the first call, planted hook included
    assert_same_instances(predictor(_image()), reference, 1e-3, 0.99)
    images = [_image(2, (160, 256)), _image(4, (420, 180))]
    torch_predictor = _predictor(checkpoint, optimize=False)
    for got, ref in zip(predictor(images), torch_predictor(images)):
        assert_same_instances(got, ref, 1e-3, 0.99)
        assert got["class_names"] == ref["class_names"]
        np.testing.assert_array_equal(got["boxes"], masks_to_boxes(torch.from_numpy(got["masks"])).numpy())


def test_bad_backend(checkpoint, monkeypatch):
    with pytest.raises(ValueError, match="backend must be one of torch, onnxruntime, openvino, got 'tensorrt'"):
        Predictor(load_config(SEED_CONFIG, OPTIONS), checkpoint, backend="tensorrt")
    with pytest.raises(ValueError, match="runs fp32 on the CPU"):
        Predictor(load_config(SEED_CONFIG, OPTIONS), checkpoint, backend="onnxruntime", precision="bf16")
    import importlib.util
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else
                        find_spec(name, *a))
    with pytest.raises(ValueError, match=r"needs onnxruntime: pip install 'solov2\[onnx\]'"):
        Predictor(load_config(SEED_CONFIG, OPTIONS), checkpoint, backend="onnxruntime")


def test_bad_precision(checkpoint):
    with pytest.raises(ValueError, match="precision must be one of"):
        Predictor(load_config(SEED_CONFIG, OPTIONS), checkpoint, precision="int8")
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        Predictor(load_config(SEED_CONFIG, OPTIONS), checkpoint, precision="fp16")


def test_auto_precision_resolves_per_backend(checkpoint, monkeypatch):
    import solov2.precision
    monkeypatch.delenv("SOLOV2_PRECISION")
    monkeypatch.setattr(solov2.precision, "cpu_has_native_bf16", lambda: True)
    predictor = Predictor(load_config(SEED_CONFIG, OPTIONS), checkpoint)
    assert predictor.precision == "bf16" and predictor.autocast_dtype is torch.bfloat16
    assert Predictor(load_config(SEED_CONFIG, OPTIONS), checkpoint, precision="fp32").autocast_dtype is None
    if importlib.util.find_spec("onnxruntime"):  # exported graphs run fp32: "auto" does not make them refuse
        assert Predictor(load_config(SEED_CONFIG, OPTIONS), checkpoint, backend="onnxruntime").precision == "fp32"
    monkeypatch.setattr(solov2.precision, "cpu_has_native_bf16", lambda: False)
    assert Predictor(load_config(SEED_CONFIG, OPTIONS), checkpoint).precision == "fp32"


def test_the_first_parameter_takes_the_former_keyword_too(checkpoint):
    cfg = load_config(SEED_CONFIG, OPTIONS)
    by_keyword = Predictor(config=cfg, checkpoint=checkpoint, optimize=False)
    by_name = Predictor(model=cfg, checkpoint=checkpoint, optimize=False)
    for a, b in zip(by_keyword.model.state_dict().values(), by_name.model.state_dict().values()):
        assert torch.equal(a, b)
    assert by_keyword.class_names == by_name.class_names == CITYSCAPES_CLASSES

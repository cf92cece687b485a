"""Models with deformable convolutions export to ONNX (DeformConv, opset 19) and TorchScript, or stop in one line."""
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from helpers import DEMO_CONFIG, tiny_model  # noqa: E402

from solov2 import build_model, load_config  # noqa: E402
from solov2.deploy import dcn_onnx  # noqa: E402
from solov2.deploy.export import SOLOv2ExportWrapper, export_onnx, export_torchscript  # noqa: E402
from solov2.deploy.runtime import load_exported  # noqa: E402
from solov2.errors import ExportError  # noqa: E402
from solov2.models.dcn import DeformConvPack, ModulatedDeformConvPack  # noqa: E402

INPUT = (96, 128)


def _deformed(model, seed=0):
    """Non-zero offsets and masks everywhere (fresh packs start at zero offsets, which would test nothing)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (DeformConvPack, ModulatedDeformConvPack)):
            m.conv_offset.weight.data = torch.randn(m.conv_offset.weight.shape, generator=g) * 0.05
            m.conv_offset.bias.data = torch.randn(m.conv_offset.bias.shape, generator=g)
    return model


@pytest.fixture(scope="module")
def dcn_model():
    torch.manual_seed(0)
    cfg = load_config(DEMO_CONFIG, {"model.bbox_head.num_classes": 3, "model.transform.test_scale": (128, 128),
                                    "model.bbox_head.use_dcn_in_tower": True, "model.bbox_head.type_dcn": "DCNv2"})
    cfg.model.mask_feat_head.conv_cfg = dict(type="DCN")  # v1 in the mask branch, v2 in the towers
    return _deformed(build_model(cfg)).eval()


def _reference(model, x):
    size = torch.tensor(x.shape[-2:])  # the whole input is the image: nothing to crop
    with torch.no_grad(), SOLOv2ExportWrapper(model) as wrapper:
        return wrapper(x, size)


@pytest.mark.slow  # export + onnxruntime parity (test_strided_grouped_pack_matches_onnxruntime stays fast)
def test_onnx_export_runs_in_onnxruntime_with_the_models_outputs(dcn_model, tmp_path):
    x = torch.randn(1, 3, *INPUT)
    path = export_onnx(dcn_model, str(tmp_path / "dcn.onnx"), input_size=INPUT)
    import onnx
    proto = onnx.load(path)
    # 5 levels x 2 towers x 2 convs, 8 mask-branch convs
    assert sum(n.op_type == "DeformConv" for n in proto.graph.node) == 5 * 2 * 2 + 8
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 19
    got = load_exported(path).run(x)
    for a, b in zip(got, _reference(dcn_model, x)):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_torchscript_export_with_dcn(dcn_model, tmp_path):
    x = torch.randn(1, 3, *INPUT)
    path = export_torchscript(dcn_model, str(tmp_path / "dcn.pt"), input_size=INPUT)
    got = load_exported(path).run(x)
    for a, b in zip(got, _reference(dcn_model, x)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_strided_grouped_pack_matches_onnxruntime(tmp_path):
    # The backbone's case: stride 2, groups (ResNeXt), modulated; and DCNv1 without mask.
    import onnxruntime as ort
    for conv in (ModulatedDeformConvPack(8, 8, 3, stride=2, padding=1, groups=4, bias=False),
                 DeformConvPack(8, 4, 3, padding=1)):
        _deformed(conv, seed=1).eval()
        x = torch.randn(1, 8, 9, 11)
        path = str(tmp_path / "pack.onnx")
        opset = dcn_onnx.prepare_onnx_export(conv, 17, path)
        assert opset == 19
        torch.onnx.export(conv, (x,), path, dynamo=False, opset_version=opset, input_names=["x"])
        y = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
        torch.testing.assert_close(torch.from_numpy(y), conv(x).detach(), atol=1e-5, rtol=1e-5)


def test_a_runtime_without_deformconv_gets_one_line_and_no_file(dcn_model, tmp_path, monkeypatch):
    monkeypatch.setattr(dcn_onnx, "onnxruntime_runs_deform_conv", lambda: (False, "onnxruntime 1.0: no DeformConv"))
    out = tmp_path / "dcn.onnx"
    with pytest.raises(ExportError) as err:
        export_onnx(dcn_model, str(out), input_size=INPUT)
    message = str(err.value)
    assert "\n" not in message and "torchvision::deform_conv2d" in message and "DeformConv" in message
    assert str(out) in message and not out.exists()


def test_plain_models_keep_their_opset(tmp_path):
    model = tiny_model(3).eval()
    assert not dcn_onnx.has_deform_conv(model)
    assert dcn_onnx.prepare_onnx_export(model, 17, str(tmp_path / "x.onnx")) == 17


def test_dcn_model_trains_one_step():
    from helpers import image_with, rect_masks
    cfg = load_config(DEMO_CONFIG, {"model.bbox_head.num_classes": 3, "model.transform.train_scales": [(128, 128)],
                                    "model.bbox_head.use_dcn_in_tower": True, "model.bbox_head.type_dcn": "DCNv2"})
    cfg.model.mask_feat_head.conv_cfg = dict(type="DCNv2")
    model = build_model(cfg).train()
    masks = rect_masks((128, 128), [(10, 20, 70, 90), (60, 8, 120, 50)])
    losses = model([image_with(masks)], [{"masks": masks, "labels": torch.tensor([0, 2])}])
    sum(losses.values()).backward()
    grads = [m.conv_offset.weight.grad for m in model.modules() if isinstance(m, ModulatedDeformConvPack)]
    assert len(grads) == 2 * 2 + 8 and all(g is not None and g.abs().sum() > 0 for g in grads)

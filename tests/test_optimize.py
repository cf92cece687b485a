"""solov2.inference.optimize: BatchNorm folding and channels_last change nothing but speed."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from solov2 import build_model, load_config
from solov2.inference.optimize import count_batchnorms, fuse_conv_bn, optimize_for_inference, to_channels_last

CONFIG = "configs/solov2/cityscapes/solov2_light_448_r50_fpn_2gpu_3x.py"
R18 = {"model.backbone.depth": 18, "model.neck.in_channels": [64, 128, 256, 512]}


def _model(depth: int) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(load_config(CONFIG, R18 if depth == 18 else None)).eval()
    # Fresh BatchNorms are identities (mean 0, var 1, weight 1, bias 0); make the folding do some work.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
    return model


def _outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.inference_mode():
        cate_preds, kernel_preds, mask_feats = model.forward_features(x)
    return [*cate_preds, *kernel_preds, mask_feats]


def _assert_same(expected: list[torch.Tensor], actual: list[torch.Tensor]) -> None:
    assert len(expected) == len(actual)
    for e, a in zip(expected, actual):
        assert e.shape == a.shape
        # 1e-4 relative; the absolute part is scaled to the tensor so values near 0 do not fail spuriously.
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-4 * e.abs().max().item())


@pytest.mark.parametrize("depth", [18, 50])
def test_fused_model_gives_the_same_outputs(depth):
    model = _model(depth)
    fused = fuse_conv_bn(model)
    assert count_batchnorms(model) > 0 and count_batchnorms(fused) == 0
    assert not fused.training and all(not p.requires_grad for p in fused.parameters())
    x = torch.randn(1, 3, 128, 192)
    _assert_same(_outputs(model, x), _outputs(fused, x))


def test_fuse_leaves_the_original_alone():
    model = _model(18)
    keys = set(model.state_dict())
    fused = fuse_conv_bn(model)
    assert set(model.state_dict()) == keys
    assert isinstance(model.backbone.bn1, nn.BatchNorm2d)
    assert isinstance(fused.backbone.bn1, nn.Identity) and fused.backbone.conv1.bias is not None
    assert isinstance(fused.backbone.layer2[0].downsample[1], nn.Identity)


def test_fuse_conv_module_with_bn():
    from solov2.models.layers import ConvModule
    torch.manual_seed(0)
    block = ConvModule(4, 8, 3, padding=1, norm="BN", activation="relu").eval()
    block.bn.running_mean.uniform_(-1, 1)
    block.bn.running_var.uniform_(0.5, 2)
    fused = fuse_conv_bn(block)
    x = torch.randn(2, 4, 9, 9)
    torch.testing.assert_close(fused(x), block(x), rtol=1e-4, atol=1e-5)


def test_channels_last_and_helper_keep_outputs():
    model = _model(18)
    x = torch.randn(1, 3, 128, 192)
    expected = _outputs(model, x)
    cl = to_channels_last(_model(18))
    assert cl.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    _assert_same(expected, _outputs(cl, x))
    fast = optimize_for_inference(model, fuse=True, channels_last=True)
    _assert_same(expected, _outputs(fast, x))


def test_optimized_model_runs_end_to_end():
    model = _model(18)
    model.transform.test_scale = (192, 128)
    fast = optimize_for_inference(model)
    image = torch.randint(0, 256, (3, 100, 150), dtype=torch.uint8)
    with torch.inference_mode():
        out = fast([image])[0]
    assert set(out) == {"masks", "labels", "scores", "boxes"} and out["masks"].shape[-2:] == (100, 150)


def _count_nnpack_calls(monkeypatch) -> list:
    calls = []
    nnpack = torch._nnpack_spatial_convolution
    monkeypatch.setattr(torch, "_nnpack_spatial_convolution", lambda *a: calls.append(a[0].shape) or nnpack(*a))
    return calls


def test_use_winograd_swaps_only_wide_3x3_stride1_convs():
    from solov2.inference.winograd import WinogradConv2d, use_winograd
    net = nn.Sequential(nn.Conv2d(256, 64, 3, padding=1), nn.Conv2d(64, 64, 3, padding=1),
                        nn.Conv2d(256, 64, 1), nn.Conv2d(256, 64, 3, stride=2, padding=1),
                        nn.Conv2d(256, 64, 3, padding=2, dilation=2))
    weight = net[0].weight
    use_winograd(net)
    assert [type(m) is WinogradConv2d for m in net] == [True, False, False, False, False]
    assert net[0].weight is weight  # parameters are shared, not copied


def test_winograd_conv_matches_conv2d(monkeypatch):
    from solov2.inference.winograd import WinogradConv2d, nnpack_available
    torch.manual_seed(0)
    conv = nn.Conv2d(256, 32, 3, padding=1)
    wino = WinogradConv2d(256, 32, 3, padding=1)
    wino.load_state_dict(conv.state_dict())
    calls = _count_nnpack_calls(monkeypatch)
    x = torch.randn(2, 256, 64, 96)  # 6144 pixels >= min_pixels
    with torch.inference_mode():
        expected = conv(x)
        for inp in (x, x.contiguous(memory_format=torch.channels_last)):
            torch.testing.assert_close(wino(inp), expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
    assert len(calls) == (2 if nnpack_available() else 0)


def test_winograd_conv_falls_back_where_it_should_not_run(monkeypatch):
    from solov2.inference.winograd import WinogradConv2d
    torch.manual_seed(0)
    wino = WinogradConv2d(256, 8, 3, padding=1)
    calls = _count_nnpack_calls(monkeypatch)
    small = torch.randn(1, 256, 40, 40)  # a head grid: below min_pixels
    large = torch.randn(1, 256, 64, 96, requires_grad=True)
    with torch.inference_mode():
        torch.testing.assert_close(wino(small), F.conv2d(small, wino.weight, wino.bias, padding=1))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert wino(large.detach()).dtype == torch.bfloat16
    out = wino(large)  # autograd: the ordinary convolution, which has a backward
    out.sum().backward()
    assert large.grad is not None and calls == []


def test_optimized_model_with_winograd_keeps_outputs(monkeypatch):
    from solov2.inference.winograd import nnpack_available
    model = _model(18)
    x = torch.randn(1, 3, 256, 384)  # P2 is 64x96: the FPN's 1/4-scale conv runs Winograd
    expected = _outputs(model, x)
    calls = _count_nnpack_calls(monkeypatch)
    _assert_same(expected, _outputs(optimize_for_inference(model), x))
    assert (len(calls) > 0) == nnpack_available()


def test_winograd_conv_falls_back_if_nnpack_refuses(monkeypatch):
    from solov2.inference.winograd import WinogradConv2d

    def refuse(*args):
        raise RuntimeError("NNPACK SpatialConvolution_updateOutput failed")
    monkeypatch.setattr(torch, "_nnpack_spatial_convolution", refuse)
    monkeypatch.setattr("solov2.inference.optimize.nnpack_available", lambda: True)
    wino = WinogradConv2d(256, 8, 3, padding=1)
    x = torch.randn(1, 256, 64, 96)
    with torch.inference_mode():
        torch.testing.assert_close(wino(x), F.conv2d(x, wino.weight, wino.bias, padding=1))


def _bf16_outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return _outputs(model, x)


def test_conv_weights_stored_in_the_autocast_dtype_give_the_same_bits(monkeypatch):
    from solov2.inference import optimize
    from solov2.inference.winograd import WinogradConv2d
    monkeypatch.setattr(optimize, "_tuned_choices", lambda model: pytest.fail("tuned for a bf16 model"))
    model = _model(18)
    x = torch.randn(1, 3, 128, 192)
    expected = _bf16_outputs(optimize_for_inference(model, tune=False), x)  # autocast casts the weights per call
    stored = optimize_for_inference(model, autocast_dtype=torch.bfloat16)
    convs = [m for m in stored.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(c.weight.dtype == torch.bfloat16 for c in convs)
    assert not any(isinstance(m, WinogradConv2d) for m in stored.modules())  # Winograd runs in float32 only
    assert all(m.weight.dtype == torch.float32 for m in stored.modules() if isinstance(m, nn.GroupNorm))
    actual = _bf16_outputs(stored, x)
    assert len(actual) == len(expected)
    for e, a in zip(expected, actual):
        assert torch.equal(e, a)  # autocast rounds the weights to bf16 either way

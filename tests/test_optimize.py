"""solov2.optimize: BatchNorm folding and channels_last change nothing but speed."""
import pytest
import torch
from torch import nn

from solov2 import build_model, load_config
from solov2.optimize import count_batchnorms, fuse_conv_bn, optimize_for_inference, to_channels_last

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
    assert set(out) == {"masks", "labels", "scores"} and out["masks"].shape[-2:] == (100, 150)

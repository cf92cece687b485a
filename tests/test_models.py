"""Shapes of every configured variant, backbone options, and local ImageNet weights."""
import pytest
import torch
import torchvision
from helpers import ROOT

from solov2 import build_model, load_config
from solov2.errors import ConfigError
from solov2.models.backbone import ResNet, load_pretrained_backbone

COCO = sorted((ROOT / "configs/solov2/coco").glob("*.py"))


# The biggest networks, and the full R50 head again under other schedules, only in the full run.
SLOW_VARIANTS = {"solov2_x101_dcn_fpn_3x", "solov2_r50_fpn_1x", "solov2_r50_fpn_3x_adelaidet"}


@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.slow) if p.stem in SLOW_VARIANTS else p for p in
                                  COCO + [ROOT / "configs/solov2/cityscapes/solov2_light_448_r50_fpn_2gpu_3x.py"]],
                         ids=lambda p: p.stem)
def test_variant_output_shapes(path):
    cfg = load_config(path)
    if "r101" in path.stem:  # same head as R50 full; only check that the backbone is ResNet-101's
        backbone = build_model(cfg).backbone
        assert [len(getattr(backbone, f"layer{i}")) for i in (1, 2, 3, 4)] == [3, 4, 23, 3]
        return
    model = build_model(cfg).eval()
    head = cfg.model.bbox_head
    with torch.no_grad():
        cate, kernels, mask_feat = model.forward_features(torch.zeros(1, 3, 128, 192))
    assert [tuple(c.shape) for c in cate] == [(1, head.num_classes, s, s) for s in head.num_grids]
    assert [tuple(k.shape) for k in kernels] == [(1, head.ins_out_channels, s, s) for s in head.num_grids]
    assert tuple(mask_feat.shape) == (1, cfg.model.mask_feat_head.num_classes, 32, 48)


def test_light_and_full_heads_differ_as_in_the_paper():
    light = build_model(load_config(ROOT / "configs/solov2/coco/solov2_light_448_r50_fpn_3x.py")).bbox_head
    full = build_model(load_config(ROOT / "configs/solov2/coco/solov2_r50_fpn_3x.py")).bbox_head
    assert (len(light.cate_convs), light.solo_cate.in_channels, light.solo_kernel.out_channels) == (2, 256, 128)
    assert (len(full.cate_convs), full.solo_cate.in_channels, full.solo_kernel.out_channels) == (4, 512, 256)
    assert light.solo_cate.out_channels == full.solo_cate.out_channels == 80


def test_frozen_stages_and_norm_eval():
    net = ResNet(depth=18, frozen_stages=1, norm_eval=True).train()
    assert not any(p.requires_grad for p in net.conv1.parameters())
    assert not any(p.requires_grad for p in net.layer1.parameters())
    assert all(p.requires_grad for p in net.layer2.parameters())
    assert not net.layer3[0].bn1.training  # norm_eval keeps BN statistics frozen
    outs = net(torch.zeros(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 64, 16, 16), (1, 128, 8, 8), (1, 256, 4, 4), (1, 512, 2, 2)]


def test_torchvision_checkpoint_loads_from_local_path(tmp_path):
    tv = torchvision.models.resnet18(weights=None)
    torch.nn.init.constant_(tv.layer2[0].conv1.weight, 0.5)
    path = tmp_path / "resnet18.pth"
    torch.save(tv.state_dict(), path)
    net = ResNet(depth=18, pretrained=str(path))
    assert net.load_pretrained() == str(path)
    assert torch.equal(net.layer2[0].conv1.weight, tv.layer2[0].conv1.weight)
    with pytest.raises(ValueError, match="does not match ResNet-50"):
        load_pretrained_backbone(ResNet(depth=50), str(path))
    with pytest.raises(FileNotFoundError, match="missing.pth: pretrained backbone checkpoint not found"):
        ResNet(depth=18, pretrained=str(tmp_path / "missing.pth")).load_pretrained()


def test_unknown_model_key_is_named():
    cfg = load_config(ROOT / "configs/solov2/coco/solov2_light_448_r18_fpn_3x.py")
    cfg.model.bbox_head["num_grid"] = [1]
    with pytest.raises(ConfigError, match="num_grid"):
        build_model(cfg)


def test_caffe_style_puts_the_stride_on_the_1x1_conv():
    # zero_init_residual=False: with zero-initialised residual branches both styles start as the same function
    pytorch_style = ResNet(depth=50, frozen_stages=-1, zero_init_residual=False)
    caffe_style = ResNet(depth=50, frozen_stages=-1, style="caffe", zero_init_residual=False)
    for name in ("layer2", "layer3", "layer4"):
        a, b = getattr(pytorch_style, name)[0], getattr(caffe_style, name)[0]
        assert (a.conv1.stride, a.conv2.stride) == ((1, 1), (2, 2))
        assert (b.conv1.stride, b.conv2.stride) == ((2, 2), (1, 1))
    caffe_style.load_state_dict(pytorch_style.state_dict())  # the same parameters, strictly
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        a, b = pytorch_style.eval()(x), caffe_style.eval()(x)
    assert [o.shape for o in a] == [o.shape for o in b]
    torch.testing.assert_close(a[0], b[0])  # layer1 has no stride: identical
    assert not torch.allclose(a[1], b[1])
    with pytest.raises(ValueError, match="style must be"):
        ResNet(depth=18, style="msra")


def test_bgr_transform_flips_channels_before_normalizing():
    from solov2.models.transform import ImageTransform
    image = torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8)
    rgb = ImageTransform(test_scale=(96, 64), mean=(1.0, 2.0, 3.0), std=(1.0, 2.0, 4.0))
    bgr = ImageTransform(test_scale=(96, 64), mean=(3.0, 2.0, 1.0), std=(4.0, 2.0, 1.0), bgr=True)
    out_rgb, out_bgr = rgb([image])[0].tensors[0], bgr([image])[0].tensors[0]
    torch.testing.assert_close(out_bgr, out_rgb.flip(0))
    torch.testing.assert_close(out_bgr[0], (image[2].float() - 3.0) / 4.0)


def test_adelaidet_config_takes_converted_adelaidet_keys():
    from solov2.checkpoint.convert import convert_state_dict, convert_to_source
    model = build_model(load_config(ROOT / "configs/solov2/coco/solov2_r50_fpn_3x_adelaidet.py"))
    theirs, unmapped = convert_to_source(model.state_dict(), "adelaidet")
    assert not unmapped and any(k.startswith("backbone.bottom_up.res2") for k in theirs)
    ours, unmapped = convert_state_dict(theirs, "adelaidet")
    assert not unmapped
    model.load_state_dict(ours, strict=True)
    assert model.transform.bgr and model.backbone.layer3[0].conv1.stride == (2, 2)

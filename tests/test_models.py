"""Shapes of every configured variant, backbone options, and local ImageNet weights."""
import pytest
import torch
import torchvision

from helpers import ROOT

from solov2 import build_model, load_config
from solov2.config import ConfigError
from solov2.models.backbone import ResNet, load_pretrained_backbone

COCO = sorted((ROOT / "configs/solov2/coco").glob("*.py"))


@pytest.mark.parametrize("path", COCO + [ROOT / "configs/solov2/cityscapes/solov2_light_448_r50_fpn_2gpu_3x.py"],
                         ids=lambda p: p.stem)
def test_variant_output_shapes(path):
    cfg = load_config(path)
    if "r101" in path.stem:  # same head as R50 full; only check the backbone depth builds
        assert build_model(cfg).backbone.layer3[22] is not None
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
    assert torch.equal(net.layer2[0].conv1.weight, tv.layer2[0].conv1.weight)
    with pytest.raises(ValueError, match="does not match ResNet-50"):
        load_pretrained_backbone(ResNet(depth=50), str(path))
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        ResNet(depth=18, pretrained=str(tmp_path / "missing.pth"))


def test_unknown_model_key_is_named():
    cfg = load_config(ROOT / "configs/solov2/coco/solov2_light_448_r18_fpn_3x.py")
    cfg.model.bbox_head["num_grid"] = [1]
    with pytest.raises(ConfigError, match="num_grid"):
        build_model(cfg)

"""Checkpoint conversion from the official SOLO repo, MMDetection 3.x and AdelaiDet key names."""
from pathlib import Path

import pytest
import torch

from solov2 import build_model, load_config
from solov2.checkpoint.convert import convert_checkpoint, convert_state_dict, convert_to_source
from solov2.checkpoint.io import load_weights
from solov2.cli import main
from solov2.errors import CheckpointError

CONFIG = Path(__file__).resolve().parents[1] / "configs/solov2/cityscapes/solov2_light_448_r50_fpn_2gpu_3x.py"


@pytest.fixture(scope="module")
def model():
    cfg = load_config(CONFIG, {"model.backbone.depth": 18, "model.neck.in_channels": [64, 128, 256, 512]})
    return build_model(cfg)


@pytest.fixture(scope="module")
def state_dict(model):
    """The model's keys with random values, so that two swapped keys of equal shape cannot go unnoticed."""
    g = torch.Generator().manual_seed(0)
    out = {}
    for k, v in model.state_dict().items():
        out[k] = torch.tensor(7) if k.endswith("num_batches_tracked") else torch.randn(v.shape, generator=g)
    return out


@pytest.mark.parametrize("source", ["solo", "mmdet", "adelaidet"])
def test_round_trip_is_exact(state_dict, source):
    theirs, unmapped = convert_to_source(state_dict, source)
    assert unmapped == []
    back, unmapped = convert_state_dict(theirs, source)
    assert unmapped == []
    assert list(back) == list(state_dict)
    for k, v in state_dict.items():
        assert torch.equal(back[k], v), k


# Names from the public sources: mmdet/models/dense_heads/solov2_head.py (SOLOV2Head, MaskFeatModule,
# mmcv ConvModule with norm 'gn') and adet/modeling/solov2/solov2.py (SOLOv2InsHead, SOLOv2MaskHead) on
# detectron2's ResNet + FPN.
MMDET_KEYS = {
    "backbone.conv1.weight": "backbone.conv1.weight",
    "backbone.layer2.0.downsample.1.running_var": "backbone.layer2.0.downsample.1.running_var",
    "neck.lateral_convs.0.conv.weight": "neck.lateral_convs.0.conv.weight",
    "mask_feat_head.convs_all_levels.3.conv2.gn.weight":
        "mask_head.mask_feature_head.convs_all_levels.3.conv2.gn.weight",
    "mask_feat_head.conv_pred.0.conv.weight": "mask_head.mask_feature_head.conv_pred.conv.weight",
    "bbox_head.cate_convs.1.gn.bias": "mask_head.cls_convs.1.gn.bias",
    "bbox_head.kernel_convs.0.conv.weight": "mask_head.kernel_convs.0.conv.weight",
    "bbox_head.solo_cate.bias": "mask_head.conv_cls.bias",
    "bbox_head.solo_kernel.weight": "mask_head.conv_kernel.weight",
}
ADELAIDET_KEYS = {
    "backbone.conv1.weight": "backbone.bottom_up.stem.conv1.weight",
    "backbone.bn1.running_var": "backbone.bottom_up.stem.conv1.norm.running_var",
    "backbone.layer1.1.conv2.weight": "backbone.bottom_up.res2.1.conv2.weight",
    "backbone.layer2.0.bn1.bias": "backbone.bottom_up.res3.0.conv1.norm.bias",
    "backbone.layer4.0.downsample.0.weight": "backbone.bottom_up.res5.0.shortcut.weight",
    "backbone.layer4.0.downsample.1.running_mean": "backbone.bottom_up.res5.0.shortcut.norm.running_mean",
    "neck.lateral_convs.0.conv.weight": "backbone.fpn_lateral2.weight",
    "neck.fpn_convs.3.conv.bias": "backbone.fpn_output5.bias",
    "mask_feat_head.convs_all_levels.3.conv2.conv.weight": "mask_head.convs_all_levels.3.conv2.0.weight",
    "mask_feat_head.convs_all_levels.0.conv0.gn.bias": "mask_head.convs_all_levels.0.conv0.1.bias",
    "mask_feat_head.conv_pred.0.conv.weight": "mask_head.conv_pred.0.weight",
    "mask_feat_head.conv_pred.0.gn.weight": "mask_head.conv_pred.1.weight",
    "bbox_head.cate_convs.1.conv.weight": "ins_head.cate_tower.3.weight",
    "bbox_head.kernel_convs.1.gn.bias": "ins_head.kernel_tower.4.bias",
    "bbox_head.solo_cate.bias": "ins_head.cate_pred.bias",
    "bbox_head.solo_kernel.weight": "ins_head.kernel_pred.weight",
}


@pytest.mark.parametrize("source,expected", [("mmdet", MMDET_KEYS), ("adelaidet", ADELAIDET_KEYS)])
def test_known_source_names(state_dict, source, expected):
    theirs, _ = convert_to_source(state_dict, source)
    for ours, name in expected.items():
        assert torch.equal(theirs[name], state_dict[ours]), (ours, name)


def test_unknown_keys_are_reported(state_dict):
    theirs, _ = convert_to_source(state_dict, "adelaidet")
    # A key from another head, and the index of a ReLU in a detectron2 tower (it has no weights in ours).
    theirs["mask_head.foo.weight"] = torch.zeros(1)
    theirs["ins_head.cate_tower.2.weight"] = torch.zeros(1)
    converted, unmapped = convert_state_dict(theirs, "adelaidet")
    assert unmapped == ["mask_head.foo.weight", "ins_head.cate_tower.2.weight"]
    assert set(converted) == set(state_dict)
    with pytest.raises(ValueError, match="unknown checkpoint source 'detectron'"):
        convert_state_dict(theirs, "detectron")


def test_frozen_batchnorm_gets_a_counter(state_dict):
    # detectron2's FrozenBatchNorm2d has no num_batches_tracked buffer.
    theirs, _ = convert_to_source(state_dict, "adelaidet")
    theirs = {k: v for k, v in theirs.items() if not k.endswith("num_batches_tracked")}
    converted, unmapped = convert_state_dict(theirs, "adelaidet")
    assert unmapped == [] and set(converted) == set(state_dict)
    assert converted["backbone.bn1.num_batches_tracked"].item() == 0


def test_cli_from_solo_strips_module_prefix(model, state_dict, tmp_path, capsys):
    src = tmp_path / "solo_ddp.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state_dict.items()}, "meta": {"epoch": 36}}, src)
    out = tmp_path / "ours.pth"
    assert main(["convert", "--from", "solo", str(src), str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    load_weights(model, str(out))  # strict: every key present with the right shape
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state_dict.items())
    assert torch.load(out, weights_only=True)["meta"]["converted_from"] == "solo"


def test_checkpoint_files_of_each_source(model, state_dict, tmp_path):
    theirs, _ = convert_to_source(state_dict, "mmdet")
    mmdet_file = tmp_path / "mmdet.pth"
    torch.save({"state_dict": {**theirs, "mask_head.extra.weight": torch.zeros(1)},
                "meta": {"dataset_meta": {"classes": ("person", "car")}}}, mmdet_file)
    with pytest.warns(UserWarning, match=r"mmdet\.pth: 1 key\(s\) not mapped from 'mmdet'.*mask_head\.extra\.weight"):
        unmapped = convert_checkpoint(str(mmdet_file), str(tmp_path / "a.pth"), "mmdet")
    assert unmapped == ["mask_head.extra.weight"]
    meta = load_weights(model, str(tmp_path / "a.pth"))["meta"]
    assert meta["classes"] == ["person", "car"]
    with pytest.raises(CheckpointError, match="mask_head.extra.weight"):
        convert_checkpoint(str(mmdet_file), str(tmp_path / "b.pth"), "mmdet", strict=True)
    assert not (tmp_path / "b.pth").exists()

    theirs, _ = convert_to_source(state_dict, "adelaidet")
    d2_file = tmp_path / "adelaidet.pth"
    torch.save({"model": theirs, "iteration": 270000}, d2_file)
    assert convert_checkpoint(str(d2_file), str(tmp_path / "c.pth"), "adelaidet", strict=True) == []
    load_weights(model, str(tmp_path / "c.pth"))


def test_wrong_source_is_an_error(state_dict, tmp_path):
    theirs, _ = convert_to_source(state_dict, "adelaidet")
    src = tmp_path / "d2.pth"
    torch.save({"model": theirs}, src)
    with pytest.raises(CheckpointError, match="no key matches the 'mmdet' SOLOv2 layout"):
        convert_checkpoint(str(src), str(tmp_path / "out.pth"), "mmdet")

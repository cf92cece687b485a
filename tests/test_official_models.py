"""The nine official SOLOv2 COCO models: each config builds the official state_dict, key for key, shape for shape.

The expected lists are tests/data/official_solov2_keys.txt, written by tests/data/official_solov2_keys.py from
the official config files and the official modules' naming rules (written out there, not taken from our
models). Models are built on the meta device: no memory is allocated, an X101-DCN takes a fraction of a second.
"""
import re

import pytest
import torch
from helpers import ROOT

from solov2 import build_model, load_config

KEYS_FILE = ROOT / "tests/data/official_solov2_keys.txt"


def expand(line: str) -> list[tuple[str, tuple[int, ...]]]:
    key, shape_text = line.rsplit(" ", 1)
    shape = () if shape_text == "-" else tuple(int(v) for v in shape_text.split(","))
    keys = [key]
    m = re.search(r"\[(\d+)-(\d+)\]", key)
    if m:
        keys = [key[: m.start()] + str(i) + key[m.end():] for i in range(int(m.group(1)), int(m.group(2)) + 1)]
    out = []
    for k in keys:
        b = re.search(r"\{([\w,]+)\}", k)
        fields = b.group(1).split(",") if b else [None]
        out += [(k if f is None else k[: b.start()] + f + k[b.end():], shape) for f in fields]
    return out


def official_lists() -> dict[str, tuple[str, int, dict[str, tuple[int, ...]]]]:
    models, name = {}, None
    for line in KEYS_FILE.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            name, official, count = re.fullmatch(r"\[(\w+)\] (\S+) (\d+) keys", line).groups()
            models[name] = (official, int(count), {})
            continue
        for key, shape in expand(line):
            assert key not in models[name][2], f"{name}: {key} listed twice"
            models[name][2][key] = shape
    return models


OFFICIAL = official_lists()


def test_the_list_holds_the_nine_official_models():
    assert sorted(OFFICIAL) == sorted([
        "solov2_r50_fpn_1x", "solov2_r50_fpn_3x", "solov2_r101_fpn_3x", "solov2_r101_dcn_fpn_3x",
        "solov2_x101_dcn_fpn_3x", "solov2_light_448_r18_fpn_3x", "solov2_light_448_r34_fpn_3x",
        "solov2_light_448_r50_fpn_3x", "solov2_light_512_dcn_r50_fpn_3x"])
    for name, (official, count, keys) in OFFICIAL.items():
        assert len(keys) == count, name  # the folded lines expand to the count the generator wrote
        assert official.replace("_8gpu", "") == name + ".py"  # our configs are named after the official files


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_config_builds_the_official_state_dict(name):
    _, _, expected = OFFICIAL[name]
    with torch.device("meta"):
        model = build_model(load_config(ROOT / f"configs/solov2/coco/{name}.py"))
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(ours))
    extra = sorted(set(ours) - set(expected))
    assert not missing and not extra, f"missing {missing[:8]}, not in the official model {extra[:8]}"
    wrong = [(k, ours[k], expected[k]) for k in expected if ours[k] != expected[k]]
    assert not wrong, wrong[:8]


def test_dcn_models_have_deformable_layers_where_the_official_configs_put_them():
    # A spot check that reads like the official configs (the full lists are compared above).
    r101 = OFFICIAL["solov2_r101_dcn_fpn_3x"][2]
    assert r101["backbone.layer2.0.conv2.conv_offset.weight"] == (27, 128, 3, 3)  # DCNv2, stride-2 block too
    assert "backbone.layer1.0.conv2.conv_offset.weight" not in r101  # stage_with_dcn=(False, True, True, True)
    assert r101["mask_feat_head.conv_pred.0.conv.conv_offset.weight"] == (3, 128, 1, 1)  # 1x1 DCNv2
    assert r101["bbox_head.kernel_convs.0.conv.conv_offset.weight"] == (27, 258, 3, 3)
    x101 = OFFICIAL["solov2_x101_dcn_fpn_3x"][2]
    assert x101["backbone.layer4.2.conv2.weight"] == (2048, 32, 3, 3)  # 64 groups of 4 x 8 channels
    light = OFFICIAL["solov2_light_512_dcn_r50_fpn_3x"][2]
    assert light["backbone.layer3.5.conv2.conv_offset.weight"] == (18, 256, 3, 3)  # DCN (v1): 2 x 9 offsets
    assert "bbox_head.cate_convs.1.conv.conv_offset.weight" not in light  # light head: only the last conv
    assert light["bbox_head.cate_convs.2.conv.conv_offset.weight"] == (18, 256, 3, 3)


DCN_MODELS = ["solov2_r101_dcn_fpn_3x", "solov2_x101_dcn_fpn_3x", "solov2_light_512_dcn_r50_fpn_3x"]


@pytest.mark.parametrize("name", DCN_MODELS)
def test_dcn_keys_convert_from_solo_and_mmdet(name):
    # Official DCN checkpoints need no conversion (--from solo keeps every key); MMDetection 3.x's R101-DCN and
    # X101-DCN name the deformable layers as mmcv does (conv_offset), under its own head names.
    from solov2.checkpoint.convert import convert_state_dict, convert_to_source
    state = {k: torch.empty(s, device="meta") for k, s in OFFICIAL[name][2].items()}
    same, unmapped = convert_state_dict(state, "solo")
    assert unmapped == [] and list(same) == list(state)
    theirs, unmapped = convert_to_source(state, "mmdet")
    assert unmapped == []
    assert "mask_head.cls_convs.2.conv.conv_offset.weight" in theirs
    if "mask_feat_head.conv_pred.0.conv.conv_offset.weight" in state:
        assert "mask_head.mask_feature_head.conv_pred.conv.conv_offset.weight" in theirs
    back, unmapped = convert_state_dict(theirs, "mmdet")
    assert unmapped == [] and sorted(back) == sorted(state)

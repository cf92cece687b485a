"""Write tests/data/official_solov2_keys.txt: the state_dict keys and shapes of the nine official SOLOv2 COCO models.

Independent of solov2's model code: the naming rules of the official SOLO code (WXinlong/SOLO, mmdet 1.x) are
written out below from its module definitions, and each model's settings are read from the official config
files of a SOLO checkout::

    git clone https://github.com/WXinlong/SOLO && python tests/data/official_solov2_keys.py SOLO

Rules (official file -> what it names):
  mmdet/models/backbones/resnet.py   conv1, bn1 (build_norm_layer postfix 1); layer{1..4}.{b}: BasicBlock conv1/bn1,
                                     conv2/bn2; Bottleneck conv1 (planes x inplanes 1x1), conv2 (3x3), conv3
                                     (4*planes), bn1..3; downsample.0 (1x1 conv) / downsample.1 (BN) on block 0.
                                     With dcn and stage_with_dcn[s], conv2 = build_conv_layer(dcn, ...) with
                                     bias=False (fallback_on_stride=False in every official config).
  mmdet/models/backbones/resnext.py  width = planes if groups == 1 else floor(planes * base_width / 64) * groups;
                                     conv2 grouped (weight (width, width / groups, 3, 3)).
  mmdet/ops/dcn/deform_conv.py       DCN = DeformConvPack: weight, no bias, conv_offset = Conv2d(in, 2*9, 3,
                                     bias=True), not grouped; DCNv2 = ModulatedDeformConvPack: the same with
                                     3*k*k offset channels, and bias only with bias=True.
  mmdet/models/utils/conv_module.py  ConvModule: conv (bias = no norm), norm 'gn' for GN (no postfix).
  mmdet/models/necks/fpn.py          lateral_convs.{i}.conv (1x1, bias), fpn_convs.{i}.conv (3x3, bias),
                                     i = 0..3 (num_outs=5 from 4 inputs: the 5th is a max pool, no weights).
  mmdet/models/mask_heads/mask_feat_head.py  convs_all_levels.0.conv0; level i > 0: conv{j} for j < i, input
                                     in_channels + 2 at level 3 conv0 (CoordConv), out_channels after the
                                     first; conv_pred.0 (1x1 to num_classes); every ConvModule gets conv_cfg.
  mmdet/models/anchor_heads/solov2_head.py (solov2_light_head.py)  cate_convs.{i} (input in_channels at i=0),
                                     kernel_convs.{i} (in_channels + 2 at i=0); use_dcn_in_tower: every tower
                                     conv (light head: only i = stacked_convs - 1) gets type_dcn; solo_cate
                                     (num_classes - 1 outputs, 3x3, bias), solo_kernel (ins_out_channels, 3x3, bias).
BatchNorm saves weight, bias, running_mean, running_var and num_batches_tracked (a 0-dim counter).

Output: one block per model, ``[name]`` then ``key shape`` lines (shape as comma-separated ints, ``-`` for
0-dim), with runs of block indices folded (``backbone.layer3.[1-22].conv1.weight 256,1024,1,1``) and BatchNorm's four
tensors on one line (``backbone.bn1.{weight,bias,running_mean,running_var} 64``).
"""
from __future__ import annotations

import math
import re
import sys
from pathlib import Path

# Our config name -> the official config file (configs/solov2/ in WXinlong/SOLO).
OFFICIAL = {
    "solov2_r50_fpn_1x": "solov2_r50_fpn_8gpu_1x.py",
    "solov2_r50_fpn_3x": "solov2_r50_fpn_8gpu_3x.py",
    "solov2_r101_fpn_3x": "solov2_r101_fpn_8gpu_3x.py",
    "solov2_r101_dcn_fpn_3x": "solov2_r101_dcn_fpn_8gpu_3x.py",
    "solov2_x101_dcn_fpn_3x": "solov2_x101_dcn_fpn_8gpu_3x.py",
    "solov2_light_448_r18_fpn_3x": "solov2_light_448_r18_fpn_8gpu_3x.py",
    "solov2_light_448_r34_fpn_3x": "solov2_light_448_r34_fpn_8gpu_3x.py",
    "solov2_light_448_r50_fpn_3x": "solov2_light_448_r50_fpn_8gpu_3x.py",
    "solov2_light_512_dcn_r50_fpn_3x": "solov2_light_512_dcn_r50_fpn_8gpu_3x.py",
}
BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def bn(keys: dict, prefix: str, c: int) -> None:
    for f in BN:
        keys[f"{prefix}.{f}"] = () if f == "num_batches_tracked" else (c,)


def conv(keys: dict, prefix: str, cout: int, cin: int, k: int, bias: bool, conv_cfg: dict | None = None,
         groups: int = 1) -> None:
    keys[f"{prefix}.weight"] = (cout, cin // groups, k, k)
    dcn = (conv_cfg or {}).get("type", "Conv")
    if dcn == "Conv":
        if bias:
            keys[f"{prefix}.bias"] = (cout,)
        return
    per_point = {"DCN": 2, "DCNv2": 3}[dcn] * conv_cfg.get("deformable_groups", 1)
    if bias:
        assert dcn == "DCNv2", "DeformConv has no bias"
        keys[f"{prefix}.bias"] = (cout,)
    keys[f"{prefix}.conv_offset.weight"] = (per_point * k * k, cin, k, k)
    keys[f"{prefix}.conv_offset.bias"] = (per_point * k * k,)


def backbone(keys: dict, cfg: dict) -> list[int]:
    depth = cfg["depth"]
    groups, base_width = cfg.get("groups", 1), cfg.get("base_width", 4)
    dcn, stage_with_dcn = cfg.get("dcn"), cfg.get("stage_with_dcn", (False,) * 4)
    basic = depth in (18, 34)
    blocks = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[depth]
    expansion = 1 if basic else 4
    conv(keys, "backbone.conv1", 64, 3, 7, False)
    bn(keys, "backbone.bn1", 64)
    inplanes, outs = 64, []
    for s, n in enumerate(blocks):
        planes = 64 * 2 ** s
        stage_dcn = {k: v for k, v in dcn.items() if k != "fallback_on_stride"} if dcn and stage_with_dcn[s] else None
        assert not (dcn and dcn.get("fallback_on_stride")), "no official config falls back on stride"
        for b in range(n):
            p = f"backbone.layer{s + 1}.{b}"
            cin = inplanes if b == 0 else planes * expansion
            if basic:
                assert stage_dcn is None
                conv(keys, f"{p}.conv1", planes, cin, 3, False)
                bn(keys, f"{p}.bn1", planes)
                conv(keys, f"{p}.conv2", planes, planes, 3, False)
                bn(keys, f"{p}.bn2", planes)
            else:
                width = planes if groups == 1 else math.floor(planes * (base_width / 64)) * groups
                conv(keys, f"{p}.conv1", width, cin, 1, False)
                bn(keys, f"{p}.bn1", width)
                conv(keys, f"{p}.conv2", width, width, 3, False, stage_dcn, groups)
                bn(keys, f"{p}.bn2", width)
                conv(keys, f"{p}.conv3", planes * 4, width, 1, False)
                bn(keys, f"{p}.bn3", planes * 4)
            if b == 0 and (s > 0 or inplanes != planes * expansion):
                conv(keys, f"{p}.downsample.0", planes * expansion, inplanes, 1, False)
                bn(keys, f"{p}.downsample.1", planes * expansion)
        inplanes = planes * expansion
        outs.append(inplanes)
    return outs


def neck(keys: dict, cfg: dict) -> None:
    assert cfg["num_outs"] == 5 and not cfg.get("add_extra_convs", False) and cfg.get("start_level", 0) == 0
    for i, cin in enumerate(cfg["in_channels"]):
        conv(keys, f"neck.lateral_convs.{i}.conv", cfg["out_channels"], cin, 1, True)
        conv(keys, f"neck.fpn_convs.{i}.conv", cfg["out_channels"], cfg["out_channels"], 3, True)


def gn(keys: dict, prefix: str, c: int) -> None:
    keys[f"{prefix}.weight"] = keys[f"{prefix}.bias"] = (c,)


def mask_feat_head(keys: dict, cfg: dict) -> None:
    cin, cout, conv_cfg = cfg["in_channels"], cfg["out_channels"], cfg.get("conv_cfg")
    assert (cfg["start_level"], cfg["end_level"]) == (0, 3) and cfg["norm_cfg"]["type"] == "GN"
    for i in range(4):
        for j in range(max(i, 1)):
            chn = (cin + 2 if i == 3 else cin) if j == 0 else cout
            p = f"mask_feat_head.convs_all_levels.{i}.conv{j}"
            conv(keys, f"{p}.conv", cout, chn, 3, False, conv_cfg)
            gn(keys, f"{p}.gn", cout)
    conv(keys, "mask_feat_head.conv_pred.0.conv", cfg["num_classes"], cout, 1, False, conv_cfg)
    gn(keys, "mask_feat_head.conv_pred.0.gn", cfg["num_classes"])


def bbox_head(keys: dict, cfg: dict) -> None:
    light = cfg["type"] == "SOLOv2LightHead"
    assert cfg["type"] in ("SOLOv2Head", "SOLOv2LightHead")
    n, cin, seg = cfg["stacked_convs"], cfg["in_channels"], cfg["seg_feat_channels"]
    for i in range(n):
        dcn = cfg.get("use_dcn_in_tower", False) and (not light or i == n - 1)
        conv_cfg = dict(type=cfg["type_dcn"]) if dcn else None
        conv(keys, f"bbox_head.cate_convs.{i}.conv", seg, cin if i == 0 else seg, 3, False, conv_cfg)
        gn(keys, f"bbox_head.cate_convs.{i}.gn", seg)
        conv(keys, f"bbox_head.kernel_convs.{i}.conv", seg, cin + 2 if i == 0 else seg, 3, False, conv_cfg)
        gn(keys, f"bbox_head.kernel_convs.{i}.gn", seg)
    conv(keys, "bbox_head.solo_cate", cfg["num_classes"] - 1, seg, 3, True)
    conv(keys, "bbox_head.solo_kernel", cfg["ins_out_channels"], seg, 3, True)


def official_keys(model: dict) -> dict[str, tuple[int, ...]]:
    keys: dict[str, tuple[int, ...]] = {}
    backbone(keys, model["backbone"])
    neck(keys, model["neck"])
    mask_feat_head(keys, model["mask_feat_head"])
    bbox_head(keys, model["bbox_head"])
    return keys


def fold(keys: dict[str, tuple[int, ...]]) -> list[str]:
    """``key shape`` lines, consecutive block indices with the same rest of the key and shape folded."""
    lines, runs = [], {}
    order = []
    for key, shape in keys.items():
        m = re.fullmatch(r"(backbone\.layer\d+\.)(\d+)(\..*)", key)
        shape_text = ",".join(map(str, shape)) or "-"
        if m is None:
            order.append((key, shape_text))
            continue
        group = (m.group(1), m.group(3), shape_text)
        if group not in runs:
            runs[group] = []
            order.append(group)
        runs[group].append(int(m.group(2)))
    for item in order:
        if len(item) == 2:
            lines.append(f"{item[0]} {item[1]}")
            continue
        head, tail, shape_text = item
        idx = runs[item]
        start = prev = idx[0]
        for i in idx[1:] + [None]:
            if i is not None and i == prev + 1:
                prev = i
                continue
            label = str(start) if start == prev else f"[{start}-{prev}]"
            lines.append(f"{head}{label}{tail} {shape_text}")
            if i is not None:
                start = prev = i
    return fold_bn(lines)


def fold_bn(lines: list[str]) -> list[str]:
    """Four consecutive BatchNorm lines of one shape -> ``prefix.{weight,bias,running_mean,running_var} shape``."""
    out, i, quad = [], 0, BN[:4]
    while i < len(lines):
        parts = [line.rsplit(" ", 1) for line in lines[i: i + 4]]
        prefix = parts[0][0].rsplit(".", 1)[0]
        if len(parts) == 4 and all(k == f"{prefix}.{f}" and sh == parts[0][1] for (k, sh), f in zip(parts, quad)):
            out.append(f"{prefix}.{{{','.join(quad)}}} {parts[0][1]}")
            i += 4
        else:
            out.append(lines[i])
            i += 1
    return out


def read_official_model(path: Path) -> dict:
    scope: dict = {}
    exec(compile(path.read_text(), str(path), "exec"), scope)  # the official configs are plain dict literals
    return scope["model"]


def main(solo_root: str) -> None:
    root = Path(solo_root)
    out = [f"# Written by tests/data/official_solov2_keys.py from {root.name}/configs/solov2/*.py; do not edit."]
    for name, official in OFFICIAL.items():
        keys = official_keys(read_official_model(root / "configs/solov2" / official))
        out += [f"[{name}] {official} {len(keys)} keys"] + fold(keys)
    target = Path(__file__).with_name("official_solov2_keys.txt")
    target.write_text("\n".join(out) + "\n")
    print(f"wrote {target} ({len(out)} lines)")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/data/official_solov2_keys.py PATH_TO_SOLO_CHECKOUT")
    main(sys.argv[1])

"""The seed's network, exactly: the same printed tree and the official SOLO state_dict keys."""
import re

from helpers import ROOT, SEED_CONFIG

from solov2 import build_model, load_config


def seed_printout() -> str:
    text = (ROOT.parent / "shared/seed/000_2c59b9ea9e7e27ab.txt")
    if not text.exists():  # CI's clone has shared/ beside it; a copy ships in tests/data for other checkouts
        text = ROOT / "tests/data/seed_tree.txt"
    lines = text.read_text().splitlines()
    start = lines.index("SOLOv2(")
    end = next(i for i in range(start, len(lines)) if lines[i] == ")")
    return "\n".join(lines[start: end + 1])


def test_print_matches_seed_line_for_line():
    model = build_model(load_config(SEED_CONFIG))
    ours = str(model).splitlines()
    seed = seed_printout().splitlines()
    assert len(ours) == len(seed)
    for i, (a, b) in enumerate(zip(ours, seed)):
        assert a == b, f"line {i + 1}: {a!r} != {b!r}"


def test_official_key_names_and_count():
    state = build_model(load_config(SEED_CONFIG)).state_dict()
    for key in ["backbone.conv1.weight", "backbone.layer1.0.downsample.1.running_mean",
                "backbone.layer4.2.bn3.num_batches_tracked", "neck.lateral_convs.0.conv.bias",
                "neck.fpn_convs.3.conv.weight", "mask_feat_head.convs_all_levels.3.conv0.conv.weight",
                "mask_feat_head.convs_all_levels.3.conv2.gn.bias", "mask_feat_head.conv_pred.0.gn.weight",
                "bbox_head.kernel_convs.0.conv.weight", "bbox_head.cate_convs.1.gn.weight",
                "bbox_head.solo_cate.bias", "bbox_head.solo_kernel.weight"]:
        assert key in state, key
    assert state["mask_feat_head.convs_all_levels.3.conv0.conv.weight"].shape == (128, 258, 3, 3)
    assert state["bbox_head.kernel_convs.0.conv.weight"].shape == (256, 258, 3, 3)
    assert state["bbox_head.solo_cate.weight"].shape == (8, 256, 3, 3)
    assert state["bbox_head.solo_kernel.weight"].shape == (128, 256, 3, 3)
    # No buffers of our own (normalization constants, ...) that an official checkpoint would lack.
    assert not [k for k in state if not re.match(r"^(backbone|neck|mask_feat_head|bbox_head)\.", k)]


def test_checkpoint_in_the_official_file_layout_loads_strictly(tmp_path):
    # mmdet 1.x saves {"meta": {...}, "state_dict": {...}, "optimizer": {...}}; our loader reads that layout
    # with weights_only=True and checks every key against the model.
    import torch
    from solov2.engine.checkpoint import load_weights
    source = build_model(load_config(SEED_CONFIG))
    torch.nn.init.constant_(source.bbox_head.solo_kernel.bias, 0.25)
    path = tmp_path / "official_layout.pth"
    torch.save({"meta": {"mmdet_version": "1.0.0", "config": "...", "epoch": 36},
                "state_dict": source.state_dict(), "optimizer": {"state": {}, "param_groups": []}}, path)
    target = build_model(load_config(SEED_CONFIG))
    load_weights(target, str(path), strict=True)
    assert torch.equal(target.bbox_head.solo_kernel.bias, source.bbox_head.solo_kernel.bias)

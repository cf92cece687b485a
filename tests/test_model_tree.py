"""The seed's network, exactly: the same printed tree and the official SOLO state_dict keys."""
import copy
import re

import pytest
from helpers import ROOT, SEED_CONFIG

from solov2 import build_model, load_config


@pytest.fixture(scope="module")
def seed_model():
    """The R50 network of the seed's config, built once for this module (the tests do not change it)."""
    return build_model(load_config(SEED_CONFIG))


def seed_printout() -> str:
    """The ``print(model)`` tree of the seed's README (a copy of the seed's printout, kept in the repository)."""
    lines = (ROOT / "tests/data/seed_tree.txt").read_text().splitlines()
    start = lines.index("SOLOv2(")
    end = next(i for i in range(start, len(lines)) if lines[i] == ")")
    return "\n".join(lines[start: end + 1])


def test_print_matches_seed_line_for_line(seed_model):
    ours = str(seed_model).splitlines()
    seed = seed_printout().splitlines()
    assert len(ours) == len(seed)
    for i, (a, b) in enumerate(zip(ours, seed)):
        assert a == b, f"line {i + 1}: {a!r} != {b!r}"


def test_official_key_names_and_count(seed_model):
    state = seed_model.state_dict()
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


def test_checkpoint_in_the_official_file_layout_loads_strictly(seed_model, tmp_path):
    # mmdet 1.x saves {"meta": {...}, "state_dict": {...}, "optimizer": {...}}; our loader reads that layout
    # with weights_only=True and checks every key against the model.
    import torch

    from solov2.checkpoint.io import load_weights
    state = dict(seed_model.state_dict())
    state["bbox_head.solo_kernel.bias"] = torch.full_like(state["bbox_head.solo_kernel.bias"], 0.25)
    path = tmp_path / "official_layout.pth"
    torch.save({"meta": {"mmdet_version": "1.0.0", "config": "...", "epoch": 36},
                "state_dict": state, "optimizer": {"state": {}, "param_groups": []}}, path)
    target = copy.deepcopy(seed_model)  # a copy, so that the module's model stays as built
    load_weights(target, str(path), strict=True)
    assert torch.equal(target.bbox_head.solo_kernel.bias, torch.full((128,), 0.25))
    assert not torch.equal(seed_model.bbox_head.solo_kernel.bias, target.bbox_head.solo_kernel.bias)

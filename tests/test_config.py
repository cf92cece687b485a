import os

import pytest
from helpers import SEED_CONFIG

from solov2.config import load_config, parse_overrides
from solov2.errors import ConfigError


def test_base_inheritance_and_overrides():
    cfg = load_config(SEED_CONFIG, ["model.bbox_head.num_classes=3", "optimizer.lr=0.5", "max_iters=7",
                                    "data.train.root='x/y'"])
    assert cfg.model.bbox_head.num_classes == 3
    assert cfg.model.bbox_head.num_grids == [40, 36, 24, 16, 12]  # from _base_
    assert cfg.optimizer.lr == 0.5 and cfg.max_iters == 7 and cfg.data.train.root == os.path.abspath("x/y")
    assert cfg.total_epochs == 36 and cfg.data.imgs_per_gpu == 2


def test_unknown_override_key_is_named():
    with pytest.raises(ConfigError, match="model.bbox_head.num_clases"):
        load_config(SEED_CONFIG, ["model.bbox_head.num_clases=3"])
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides(["lr"])


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.py")
    bad = tmp_path / "bad.py"
    bad.write_text("model = dict(\n")
    with pytest.raises(ConfigError, match="bad.py"):
        load_config(bad)


def test_values_are_python_literals():
    assert parse_overrides(["a=[1, 2]", "b=None", "c=abc", "d=(3, 4)"]) == {"a": [1, 2], "b": None, "c": "abc",
                                                                            "d": (3, 4)}

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


def test_packaged_configs_are_found_by_name(tmp_path, monkeypatch):
    from solov2.config import find_config, packaged_configs
    path = str(packaged_configs()["solov2_light_448_r50_fpn_2gpu_3x"])
    monkeypatch.chdir(tmp_path)  # outside the repository: no configs/ folder here
    assert find_config("solov2_light_448_r50_fpn_2gpu_3x") == path
    assert find_config("solov2_light_448_r50_fpn_2gpu_3x.py") == path
    assert find_config("./configs/solov2/cityscapes/solov2_light_448_r50_fpn_2gpu_3x.py") == path
    assert load_config("solov2_light_448_r50_fpn_2gpu_3x").model.bbox_head.num_classes == 8
    with pytest.raises(ConfigError, match="no_such_config: config file not found .*solov2 configs"):
        find_config("no_such_config")


def test_data_paths_are_made_absolute_against_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config("solov2_light_448_r18_fpn_3x", ["data.train.ann_file=d/train.json",
                                                      "data.val.img_prefix=/abs/images"])
    assert cfg.data.train.ann_file == str(tmp_path / "d/train.json")
    assert cfg.data.val.img_prefix == "/abs/images"
    assert os.path.isabs(cfg.data.test.ann_file)


def test_configs_command_lists_every_packaged_config(capsys):
    from solov2.cli import main
    from solov2.config import packaged_configs
    assert main(["configs"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(packaged_configs())
    seed = next(line for line in lines if line.startswith("solov2_light_448_r50_fpn_2gpu_3x"))
    assert "R50" in seed and "CityscapesDataset (8 classes)" in seed

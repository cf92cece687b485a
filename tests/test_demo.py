"""`solov2 demo`'s recipe per CPU class (issue 24): the config as it is where training runs in bf16 or on a GPU, a
half-width ResNet-18 where it runs in fp32 on a CPU; chosen at start, printed, pinned by SOLOV2_AMP."""
import pytest
import torch

from solov2 import build_model, load_config
from solov2.apps import demo
from solov2.config import find_config


@pytest.mark.parametrize("amp_env, narrow", [("0", True), ("1", False)])
def test_the_recipe_follows_trainings_precision_on_this_cpu(monkeypatch, amp_env, narrow):
    monkeypatch.setenv("SOLOV2_AMP", amp_env)
    options, line = demo.demo_recipe(None, "cpu")
    assert (options == demo.FP32_CPU_RECIPE) is narrow and (options == {}) is not narrow
    assert ("half width" in line) is narrow and ("bf16 autocast" in line) is not narrow


def test_an_explicit_precision_or_a_gpu_keeps_the_configs_network(monkeypatch):
    monkeypatch.setenv("SOLOV2_AMP", "0")
    assert demo.demo_recipe(True, "cpu")[0] == {}
    assert demo.demo_recipe(False, "cpu")[0] == demo.FP32_CPU_RECIPE
    options, line = demo.demo_recipe(None, "cuda:1")
    assert options == {} and line.startswith("demo: fp32 on cuda:1")
    options, line = demo.demo_recipe(True, "cuda")
    assert options == {} and line.startswith("demo: fp16 autocast on cuda")  # --amp on a GPU is fp16


def test_the_fp32_recipe_builds_a_half_width_network_that_runs():
    config = find_config(demo.DEMO_CONFIG)
    wide = build_model(load_config(config))
    narrow = build_model(load_config(config, dict(demo.FP32_CPU_RECIPE)))
    assert wide.backbone.out_channels == [64, 128, 256, 512]
    assert narrow.backbone.out_channels == [32, 64, 128, 256]
    params = [sum(p.numel() for p in m.backbone.parameters()) for m in (wide, narrow)]
    assert params[1] < params[0] / 3.5  # a quarter of the convolutions' weights, and of their arithmetic
    narrow.eval()
    with torch.no_grad():
        results = narrow([torch.randint(0, 255, (3, 128, 128), dtype=torch.uint8)])
    assert len(results) == 1


def test_demo_prints_the_recipe_and_the_users_options_win(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("SOLOV2_AMP", "0")
    seen = {}

    def fake_train(config, work_dir, cfg_options, device, amp):
        seen.update(cfg_options)
        return {"mask_AP": 0.5}

    monkeypatch.setattr(demo, "train_main", fake_train)
    monkeypatch.setattr(demo, "predict_main", lambda *a, **k: [])
    demo.demo_main(str(tmp_path / "demo"), train_images=2, val_images=1, image_size=32,
                   cfg_options={"model.backbone.base_channels": 48})
    assert seen["model.backbone.base_channels"] == 48
    assert seen["model.neck.in_channels"] == [32, 64, 128, 256]
    assert "demo: fp32 on this CPU (no native bf16): ResNet-18 at half width" in capsys.readouterr().out

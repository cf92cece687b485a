"""solov2.engine.schedule: lengths given as fractions of the run, the one-line fit check, checkpoint intervals."""
import json

import pytest
from helpers import ROOT

from solov2.engine.schedule import build_schedule, checkpoint_interval, fit_problems
from solov2.errors import ConfigError


def test_fractional_warmup_and_steps_scale_with_the_run():
    cfg = dict(policy="step", warmup="linear", warmup_iters=0.05, warmup_ratio=0.1, step=[0.75, 9])
    short, long = build_schedule(0.01, cfg, total_iters=200), build_schedule(0.01, cfg, total_iters=2000)
    assert (short.warmup_iters, short.step_iters, short.step) == (10, [150], [9])
    assert (long.warmup_iters, long.step_iters) == (100, [1500])
    assert short.lr_at(0, 0) == pytest.approx(0.001) and short.lr_at(0, 10) == pytest.approx(0.01)
    assert short.lr_at(0, 149) == pytest.approx(0.01) and short.lr_at(0, 150) == pytest.approx(0.001)
    assert short.lr_at(9, 150) == pytest.approx(0.0001)  # the whole-number step is still an epoch
    cosine = build_schedule(0.01, dict(policy="cosine", warmup_iters=0.1), total_iters=300)
    assert cosine.warmup_iters == 30
    # whole numbers keep their meaning: the demo's schedule is the same as before
    demo = build_schedule(0.002, dict(policy="step", warmup="linear", warmup_iters=50, warmup_ratio=0.1, step=[13]),
                          total_iters=1750)
    assert (demo.warmup_iters, demo.step, demo.step_iters) == (50, [13], [])


@pytest.mark.parametrize("key, value, match", [("warmup_iters", 1.5, "warmup_iters: 1.5 is neither"),
                                               ("warmup_iters", -3, "warmup_iters: -3 is neither"),
                                               ("step", [2.5], "step: 2.5 is neither")])
def test_lengths_that_are_neither_whole_nor_fractions(key, value, match):
    with pytest.raises(ConfigError, match=match):
        build_schedule(0.01, {key: value}, total_iters=100)


def test_fit_problems_name_what_does_not_fit():
    # The case: 500 warm-up iterations in a 252-iteration run of 7 per epoch, decay at epoch 40.
    s = build_schedule(0.00125, dict(warmup="linear", warmup_iters=500, warmup_ratio=1 / 3, step=[27, 40]),
                       total_iters=252)
    line = fit_problems(s, 252, 7)
    assert "\n" not in line and line.startswith("schedule does not fit the run")
    assert "longer than the run (252 iterations): the lr peaks at 67% of its value" in line
    assert "epoch 40 (lr_config.step) is at or after the run's end (252 iterations, 36 epochs)" in line
    assert "epoch 27" not in line  # 27 x 7 = 189 < 252: it applies
    half = build_schedule(0.01, dict(warmup_iters=150, step=[0.99]), total_iters=252)
    assert "more than half of the run" in fit_problems(half, 252, 7)
    assert "iteration" not in fit_problems(half, 252, 7).split(";")[-1].split("(")[0]  # round(0.99*252)=249 fits
    assert fit_problems(build_schedule(0.01, dict(warmup_iters=0.05, step=[0.75]), total_iters=252), 252, 7) is None
    assert fit_problems(build_schedule(0.01, dict(warmup=None, warmup_iters=500), total_iters=252), 252, 7) is None


def test_checkpoint_interval():
    assert checkpoint_interval(1, 14) == 1 and checkpoint_interval(0, 14) == 0
    assert checkpoint_interval(0.1, 14) == 2 and checkpoint_interval(0.1, 60) == 6  # at most 10 a run
    assert checkpoint_interval(0.25, 3) == 1
    with pytest.raises(ConfigError, match="checkpoint_config.interval"):
        checkpoint_interval(2.5, 14)


def test_demo_config_writes_at_most_ten_checkpoints_and_keeps_its_schedule():
    from solov2.config import load_config
    cfg = load_config(ROOT / "configs/demo/solov2_light_r18_shapes.py")
    # the decay is a fraction of the run: at epoch 13 of the demo's 14 (as a whole-epoch step=[13] did), and near
    # the end of a longer run
    demo = build_schedule(0.002, cfg.lr_config, total_iters=14 * 125)
    old = build_schedule(0.002, {**cfg.lr_config, "step": [13]}, total_iters=14 * 125)
    assert [demo.lr_at(i // 125, i) for i in range(1750)] == [old.lr_at(i // 125, i) for i in range(1750)]
    assert build_schedule(0.002, cfg.lr_config, total_iters=480).step_iters == [446]
    for epochs in (14, 60, 200):
        assert epochs // checkpoint_interval(cfg.checkpoint_config.interval, epochs) <= 10


@pytest.mark.slow  # a training run
def test_trainer_logs_one_line_and_checkpoints_by_fraction(tmp_path):
    from solov2.checkpoint.io import read_checkpoint
    from solov2.engine.launch import train_main
    tiny = str(ROOT / "tests/data/tiny_shapes.py")
    # 4 images, 2 a step: 2 iterations an epoch, 8 in all
    opts = {"data.train.num_images": 4, "total_epochs": 4, "evaluation.interval": 0, "lr_config.warmup_iters": 500,
            "checkpoint_config.interval": 0.5, "checkpoint_config.latest_iters": 0}
    train_main(tiny, str(tmp_path), cfg_options=opts, device="cpu", seed=0)
    lines = [line for line in (tmp_path / "train.log").read_text().splitlines() if "does not fit the run" in line]
    assert len(lines) == 1 and "warmup_iters = 500" in lines[0] and "(8 iterations)" in lines[0]
    # 4 epochs, a checkpoint every ceil(0.5 x 4) = 2 epochs
    assert sorted(p.name for p in tmp_path.glob("epoch_*.pth")) == ["epoch_2.pth", "epoch_4.pth"]
    assert read_checkpoint(str(tmp_path / "latest.pth"))["meta"]["epoch"] == 4
    # training's final evaluation reports box AP next to mask AP
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert {"mask_AP", "mask_AP50", "bbox_AP", "bbox_AP50", "bbox_AP75"} <= set(metrics)


def test_fit_problems_with_a_zero_lr():
    s = build_schedule(0.0, dict(warmup="linear", warmup_iters=4, warmup_ratio=0.1), total_iters=2)
    assert "the lr peaks at 32% of its value" in fit_problems(s, 2, 2)  # 0.1 + 0.9 * 1 / 4

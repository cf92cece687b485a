"""Weight EMA (solov2/engine/ema.py): the average, its warm-up, and the trainer saving, evaluating and resuming it."""
import math

import pytest
import torch
from helpers import ROOT
from torch import nn

from solov2.checkpoint.io import read_checkpoint
from solov2.engine.ema import ModelEMA, build_ema
from solov2.engine.launch import train_main
from solov2.errors import ConfigError

TINY = str(ROOT / "tests/data/tiny_shapes.py")
AUGMENTED = str(ROOT / "tests/data/tiny_shapes_augmented.py")  # 4 iterations per epoch


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def test_the_average_follows_the_formula():
    model = _net()
    w0 = model[0].weight.detach().clone()
    ema = ModelEMA(model, decay=0.75, warmup=0)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    ema.update(model)
    assert torch.allclose(ema.module[0].weight, 0.75 * w0 + 0.25 * (w0 + 1))
    with torch.no_grad():
        model[0].weight.add_(1.0)
    ema.update(model)
    first = 0.75 * w0 + 0.25 * (w0 + 1)
    assert torch.allclose(ema.module[0].weight, 0.75 * first + 0.25 * (w0 + 2))
    assert not ema.module[0].weight.requires_grad and not ema.module.training
    # Buffers are the raw model's own: BatchNorm statistics are current, not averaged.
    model.train()(torch.randn(8, 3))
    assert torch.equal(ema.module[1].running_mean, model[1].running_mean)
    assert ema.module[1].running_mean.abs().sum() > 0


def test_warmup_and_decay_zero():
    ema = ModelEMA(_net(), decay=0.9998, warmup=2000)
    assert ema.decay_at(1) == pytest.approx(0.9998 * (1 - math.exp(-1 / 2000)))
    assert ema.decay_at(2000) == pytest.approx(0.9998 * (1 - math.exp(-1)))
    assert ema.decay_at(100_000) == pytest.approx(0.9998)
    model = _net()
    ema = ModelEMA(model, decay=0.0)
    with torch.no_grad():
        model[0].weight.mul_(3.0)
    ema.update(model)
    for a, b in zip(ema.module.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)


def test_config_errors():
    assert build_ema(None, _net()) is None and build_ema({}, _net()) is None
    with pytest.raises(ConfigError, match="decy"):
        build_ema({"decy": 0.9}, _net())
    with pytest.raises(ConfigError, match="ema.decay"):
        build_ema({"decay": 1.0}, _net())


def test_training_evaluates_the_average(tmp_path, monkeypatch):
    from solov2.config import load_config
    from solov2.engine import trainer as trainer_module
    seen = []

    def inference(model, dataset, device):
        seen.append(model)
        raise RuntimeError("stop here")

    monkeypatch.setattr(trainer_module, "inference_on_dataset", inference)
    cfg = load_config(TINY, {"ema": {"decay": 0.9}})
    trainer = trainer_module.Trainer(cfg, str(tmp_path), device="cpu", seed=0)
    with pytest.raises(RuntimeError, match="stop here"):
        trainer.evaluate()
    assert seen == [trainer.ema.module] and trainer.ema.module is not trainer.model


@pytest.mark.slow  # a training run (4 iterations)
def test_the_saved_weights_are_the_average(tmp_path, monkeypatch):
    # Record the weights the average starts from and the raw parameters after every optimizer step, average
    # them by hand: the checkpoint's state_dict is that average, its ema entry the raw weights.
    start, raw_steps = [], []
    update = ModelEMA.update

    def recording(self, model):
        if not start:
            start.extend((n, p.detach().clone()) for n, p in self.module.named_parameters())
        raw_steps.append([p.detach().clone() for p in model.parameters()])
        update(self, model)

    monkeypatch.setattr(ModelEMA, "update", recording)
    opts = {"max_iters": 4, "evaluation.interval": -1, "ema": {"decay": 0.6, "warmup": 3}}
    train_main(TINY, str(tmp_path), cfg_options=opts, device="cpu", seed=0)
    ckpt = read_checkpoint(str(tmp_path / "latest.pth"))
    assert ckpt["ema"]["updates"] == 4 == len(raw_steps)
    ema = ModelEMA(_net(), decay=0.6, warmup=3)
    changed = 0
    for i, (name, average) in enumerate(start):
        for step, raw in enumerate(raw_steps, 1):
            average = torch.lerp(average, raw[i], 1.0 - ema.decay_at(step))
        assert torch.allclose(ckpt["state_dict"][name], average, rtol=0, atol=1e-6), name
        assert torch.equal(ckpt["ema"]["raw_state_dict"][name], raw_steps[-1][i]), name
        changed += not torch.equal(ckpt["state_dict"][name], raw_steps[-1][i])
    assert changed > len(start) // 2  # the saved weights are not the raw ones


@pytest.mark.slow  # two training runs with decay 0
def test_with_decay_zero_the_average_is_the_raw_weights(tmp_path):
    opts = {"max_iters": 3, "evaluation.interval": -1, "ema": {"decay": 0.0}}
    train_main(TINY, str(tmp_path / "ema"), cfg_options=opts, device="cpu", seed=0)
    train_main(TINY, str(tmp_path / "plain"), cfg_options={**opts, "ema": None}, device="cpu", seed=0)
    ema, plain = read_checkpoint(str(tmp_path / "ema/latest.pth")), read_checkpoint(str(tmp_path / "plain/latest.pth"))
    assert "ema" not in plain
    for k, v in plain["state_dict"].items():
        assert torch.equal(ema["state_dict"][k], v), k
        assert torch.equal(ema["ema"]["raw_state_dict"][k], v), k


@pytest.mark.slow  # three training runs, ~20 s
def test_resume_restores_the_average(tmp_path):
    # 6 iterations in one go == 5 (mid-epoch), stop, resume to 6: the same average, raw weights, optimizer and
    # update count, bit for bit; with copy-paste and large-scale jitter on as well (their randomness resumes).
    opts = {"max_iters": 6, "evaluation.interval": -1, "checkpoint_config.latest_iters": 0,
            "ema": {"decay": 0.9, "warmup": 2},
            "data.train.augment": {"copy_paste": 0.5, "lsj": {"size": (80, 80), "scale": (0.5, 1.5)}}}
    train_main(AUGMENTED, str(tmp_path / "full"), cfg_options=opts, device="cpu", seed=0)
    train_main(AUGMENTED, str(tmp_path / "part"), cfg_options={**opts, "max_iters": 5}, device="cpu", seed=0)
    assert read_checkpoint(str(tmp_path / "part/latest.pth"))["ema"]["updates"] == 5
    train_main(AUGMENTED, str(tmp_path / "part"), resume="auto", cfg_options=opts, device="cpu", seed=0)
    a, b = read_checkpoint(str(tmp_path / "full/latest.pth")), read_checkpoint(str(tmp_path / "part/latest.pth"))
    assert a["ema"]["updates"] == b["ema"]["updates"] == 6
    for key in ("state_dict",):
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), k
    for k in a["ema"]["raw_state_dict"]:
        assert torch.equal(a["ema"]["raw_state_dict"][k], b["ema"]["raw_state_dict"][k]), k
    for i in a["optimizer"]["state"]:
        for k, v in a["optimizer"]["state"][i].items():
            assert torch.equal(v, b["optimizer"]["state"][i][k]), (i, k)


def test_restore_puts_the_raw_weights_back_and_the_average_into_the_ema():
    from solov2.engine.ema import restore
    model = _net()
    ema = ModelEMA(model, decay=0.5, warmup=0)
    with torch.no_grad():
        model[0].weight.add_(2.0)
    ema.update(model)
    ckpt = {"state_dict": ema.module.state_dict(), "ema": ema.state_dict(model)}
    raw, average = model.state_dict(), ema.module.state_dict()
    # As the trainer resumes: load_weights puts the checkpoint's state_dict (the average) into the model first.
    again = _net()
    again.load_state_dict(ckpt["state_dict"])
    ema_again = ModelEMA(again, decay=0.5, warmup=0)
    restore(ckpt, again, ema_again)
    assert ema_again.updates == 1
    assert all(torch.equal(again.state_dict()[k], raw[k]) for k in raw)
    assert all(torch.equal(ema_again.module.state_dict()[k], average[k]) for k in average)
    # Resumed without ema: training continues from the raw weights, not the average.
    plain = _net()
    plain.load_state_dict(ckpt["state_dict"])
    restore(ckpt, plain, None)
    assert all(torch.equal(plain.state_dict()[k], raw[k]) for k in raw)
    # A checkpoint without an average: the average starts from the loaded weights.
    fresh = _net()
    fresh_ema = ModelEMA(_net(), decay=0.5)
    fresh.load_state_dict(raw)
    restore({"state_dict": raw}, fresh, fresh_ema)
    assert fresh_ema.updates == 0 and torch.equal(fresh_ema.module[0].weight, raw["0.weight"])

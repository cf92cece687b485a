"""Training loop: schedule, exact resume (also after SIGKILL), NaN guard, and the CLI's one-line errors."""
import os
import signal
import subprocess
import sys

import pytest
import torch

from helpers import ROOT, wait_for_checkpoint

from solov2.cli import main, train_main
from solov2.engine.checkpoint import read_checkpoint
from solov2.engine.sampler import TrainSampler
from solov2.engine.schedule import build_schedule
from solov2.engine.trainer import TrainingError

TINY = str(ROOT / "tests/data/tiny_shapes.py")


def test_schedule_warmup_and_steps():
    s = build_schedule(0.01, dict(policy="step", warmup="linear", warmup_iters=10, warmup_ratio=0.1, step=[2, 3]))
    assert s.lr_at(0, 0) == pytest.approx(0.001)
    assert s.lr_at(0, 5) == pytest.approx(0.01 * (0.1 + 0.9 * 0.5))
    assert s.lr_at(1, 20) == pytest.approx(0.01)
    assert s.lr_at(2, 30) == pytest.approx(0.001)
    assert s.lr_at(3, 40) == pytest.approx(0.0001)
    with pytest.raises(ValueError, match="unknown key"):
        build_schedule(0.1, dict(stpe=[1]))


def test_sampler_shards_and_skips():
    full = [list(TrainSampler(10, seed=3, rank=r, world_size=2)) for r in (0, 1)]
    assert sorted(full[0] + full[1]) == list(range(10))
    s = TrainSampler(10, seed=3, rank=0, world_size=2)
    s.set_epoch(0, skip=2)
    assert list(s) == full[0][2:] and len(s) == 3


def _weights(path):
    return read_checkpoint(path)["state_dict"]


def test_resume_continues_exactly(tmp_path):
    # 8 iterations in one go == 4 iterations, stop, resume to 8: same weights, optimizer and lr position.
    opts = {"max_iters": 8, "evaluation.interval": -1}
    train_main(TINY, str(tmp_path / "full"), cfg_options=opts, device="cpu", seed=0)
    train_main(TINY, str(tmp_path / "part"), cfg_options={**opts, "max_iters": 5}, device="cpu", seed=0)
    ckpt = read_checkpoint(str(tmp_path / "part/latest.pth"))
    assert ckpt["meta"]["iter"] == 5 and ckpt["meta"]["epoch"] == 0
    train_main(TINY, str(tmp_path / "part"), resume="auto", cfg_options=opts, device="cpu", seed=0)
    a, b = _weights(str(tmp_path / "full/latest.pth")), _weights(str(tmp_path / "part/latest.pth"))
    assert read_checkpoint(str(tmp_path / "part/latest.pth"))["meta"]["iter"] == 8
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume(tmp_path):
    work = tmp_path / "run"
    cmd = [sys.executable, "-m", "solov2.cli", "train", TINY, "--work-dir", str(work), "--device", "cpu",
           "--cfg-options", "max_iters=30", "evaluation.interval=-1", "checkpoint_config.latest_iters=3"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = work / "latest.pth"
    wait_for_checkpoint(proc, latest, min_iter=3, timeout=240)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    killed_at = read_checkpoint(str(latest))["meta"]["iter"]
    assert 3 <= killed_at < 30 and killed_at % 8 != 0  # mid-epoch (8 iterations per epoch)
    done = subprocess.run(cmd + ["--resume"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"iteration {killed_at}" in (work / "train.log").read_text()
    assert read_checkpoint(str(latest))["meta"]["iter"] == 30


def test_nan_loss_stops_with_iteration_and_keeps_checkpoint(tmp_path, monkeypatch):
    from solov2.models.solov2 import SOLOv2
    original = SOLOv2.forward_train
    calls = {"n": 0}

    def poisoned(self, images, targets):
        calls["n"] += 1
        losses = original(self, images, targets)
        if calls["n"] == 3:
            losses["loss_cate"] = losses["loss_cate"] * float("nan")
        return losses

    monkeypatch.setattr(SOLOv2, "forward_train", poisoned)
    with pytest.raises(TrainingError, match=r"iteration 3: loss is nan .*latest.pth"):
        train_main(TINY, str(tmp_path), cfg_options={"max_iters": 6, "evaluation.interval": -1}, device="cpu")
    assert read_checkpoint(str(tmp_path / "latest.pth"))["meta"]["iter"] == 2


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["train", TINY, "--work-dir", str(tmp_path), "--cfg-options", "optimizer.lrr=1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --cfg-options: unknown key 'optimizer.lrr'") and "\n" not in err
    assert main(["eval", TINY, str(tmp_path / "missing.pth")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path / 'missing.pth'}: checkpoint not found"
    assert main(["train", str(tmp_path / "nope.py")]) == 1
    assert "nope.py: config file not found" in capsys.readouterr().err


def test_only_the_newest_epoch_checkpoints_are_kept(tmp_path):
    # 4 images / 2 per batch = 2 iterations per epoch; 8 iterations = 4 epochs; max_keep_ckpts = 2.
    train_main(TINY, str(tmp_path), device="cpu", cfg_options={
        "data.train.num_images": 4, "max_iters": 8, "evaluation.interval": -1, "checkpoint_config.latest_iters": 0})
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["epoch_3.pth", "epoch_4.pth", "latest.pth"]

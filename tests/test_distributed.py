"""The seed's command on CPU: `tools/train.py <seed config> --gpus 2` on a tiny Cityscapes tree (gloo)."""
import os
import re
import signal
import subprocess
import sys

import pytest

from helpers import ROOT, SEED_CONFIG, wait_for_checkpoint

from solov2.engine.checkpoint import read_checkpoint

pytestmark = pytest.mark.slow


def seed_command(root, work, *extra):
    # The seed's network (R50) at a small input size, one image per process, a handful of iterations.
    return [sys.executable, "tools/train.py", str(SEED_CONFIG), "--gpus", "2", "--work_dir", str(work), *extra,
            "--cfg-options", f"data.train.root={root}", f"data.val.root={root}", f"data.test.root={root}",
            "model.transform.train_scales=[(256, 128)]", "model.transform.test_scale=(256, 128)",
            "data.imgs_per_gpu=1", "data.workers_per_gpu=0", "checkpoint_config.latest_iters=1",
            "lr_config.warmup_iters=2", "evaluation.interval=-1", "model.pretrained=None"]


def test_two_process_training_on_cpu(tiny_cityscapes, tmp_path):
    work = tmp_path / "work"
    done = subprocess.run(seed_command(tiny_cityscapes, work) + ["max_iters=2"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "starting 2 CPU processes with the gloo backend" in done.stdout
    log = (work / "train.log").read_text()
    weights = re.search(r"weights of the 2 processes after training: (\S+), (\S+)", log)
    assert weights and weights.group(1) == weights.group(2)  # both ranks ran and hold identical weights
    assert read_checkpoint(str(work / "latest.pth"))["meta"]["iter"] == 2
    # 2 train images with instances / (2 processes x 1 image) = 1 iteration per epoch; rank 0 alone writes.
    assert sorted(p.name for p in work.iterdir() if p.suffix == ".pth") == ["epoch_1.pth", "epoch_2.pth",
                                                                           "latest.pth"]
    assert len(list((work / "tensorboard").iterdir())) == 1


def test_killed_two_process_run_resumes(tiny_cityscapes, tmp_path):
    work = tmp_path / "work"
    cmd = seed_command(tiny_cityscapes, work) + ["max_iters=5"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    latest = work / "latest.pth"
    wait_for_checkpoint(proc, latest, min_iter=1, timeout=300)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both workers
    proc.wait()
    killed_at = read_checkpoint(str(latest))["meta"]["iter"]
    assert 1 <= killed_at < 5
    resumed = subprocess.run(seed_command(tiny_cityscapes, work, "--resume_from", str(latest)) + ["max_iters=5"],
                             cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"at epoch 0, iteration {killed_at}" in (work / "train.log").read_text()
    assert read_checkpoint(str(latest))["meta"]["iter"] == 5

"""The seed's command on CPU: `tools/train.py <seed config> --gpus 2` on a tiny Cityscapes tree (gloo), marked slow;
and the helpers of solov2.distributed in one process, alone and in a one-process gloo group (fast)."""
import os
import re
import shlex
import signal
import subprocess
import sys

import pytest
from helpers import DEMO_CONFIG, ROOT, SEED_CONFIG, wait_for_checkpoint

from solov2.checkpoint.io import read_checkpoint



def seed_command(root, work, *extra):
    # The seed's network (R50) at a small input size, one image per process, a handful of iterations.
    return [sys.executable, "tools/train.py", str(SEED_CONFIG), "--gpus", "2", "--work_dir", str(work), *extra,
            "--cfg-options", f"data.train.root={root}", f"data.val.root={root}", f"data.test.root={root}",
            "model.transform.train_scales=[(256, 128)]", "model.transform.test_scale=(256, 128)",
            "data.imgs_per_gpu=1", "data.workers_per_gpu=0", "checkpoint_config.latest_iters=1",
            "lr_config.warmup_iters=2", "evaluation.interval=-1", "model.pretrained=None"]


@pytest.mark.slow  # training processes
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


@pytest.mark.slow  # training processes
def test_killed_two_process_run_resumes(tiny_cityscapes, tmp_path):
    work = tmp_path / "work"
    cmd = seed_command(tiny_cityscapes, work) + ["max_iters=5"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    latest = work / "latest.pth"
    wait_for_checkpoint(proc, latest, min_iter=1, timeout=300)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both workers
    proc.wait()
    meta = read_checkpoint(str(latest))["meta"]
    killed_at = meta["iter"]
    assert 1 <= killed_at < 5
    resumed = subprocess.run(seed_command(tiny_cityscapes, work, "--resume_from", str(latest)) + ["max_iters=5"],
                             cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # A kill right after an epoch's last iteration resumes at the next epoch: the checkpoint says which.
    assert f"at epoch {meta['epoch']}, iteration {killed_at}" in (work / "train.log").read_text()
    assert read_checkpoint(str(latest))["meta"]["iter"] == 5


# ----------------------------------------------------------------------------- the demo config: trainable BN
def demo_command(tmp_path, work, *extra):
    from solov2.data import write_shapes_coco
    data = tmp_path / "data"
    if not data.exists():
        write_shapes_coco(str(data), num_images=8, seed=0, image_size=64)
    paths = [f"data.{split}.{key}={data / name}" for split in ("train", "val", "test")
             for key, name in (("ann_file", "annotations.json"), ("img_prefix", "images"))]
    return [sys.executable, "-m", "solov2.cli", "train", str(DEMO_CONFIG), "--gpus", "2", "--device", "cpu",
            "--work-dir", str(work), *extra, "--cfg-options", *paths, "data.imgs_per_gpu=2",
            "data.workers_per_gpu=0", "model.transform.train_scales=[(64, 64)]", "model.transform.test_scale=(64, 64)",
            "evaluation.interval=-1", "checkpoint_config.latest_iters=1"]


@pytest.mark.slow  # training processes
def test_two_processes_with_trainable_batchnorm_and_sync_bn_on_cpu(tmp_path):
    from solov2 import build_model, load_config
    from solov2.engine.trainer import fingerprint
    work = tmp_path / "work"
    done = subprocess.run(demo_command(tmp_path, work) + ["max_iters=2", "sync_bn=True"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    notes = [ln for ln in done.stdout.splitlines() if "SyncBatchNorm" in ln]
    assert len(notes) == 1 and "sync_bn=True: SyncBatchNorm needs CUDA (NCCL), not cpu" in notes[0]
    line = re.search(r"weights of the 2 processes after training: (\S+), (\S+) \(parameters\); "
                     r"rank 0's whole state, saved: (\S+)", (work / "train.log").read_text())
    assert line and line.group(1) == line.group(2)
    saved = read_checkpoint(str(work / "latest.pth"))["state_dict"]
    names = {k for k, _ in build_model(load_config(DEMO_CONFIG)).named_parameters()}
    assert f"{fingerprint({k: v for k, v in saved.items() if k in names}):.10e}" == line.group(1)
    assert f"{fingerprint(saved):.10e}" == line.group(3)  # BatchNorm statistics included: rank 0's
    assert any(k.endswith("running_mean") for k in saved)


@pytest.mark.slow  # training processes
def test_ctrl_c_stops_every_process_and_rank_0_saves(tmp_path):
    work = tmp_path / "work"
    cmd = demo_command(tmp_path, work) + ["max_iters=50"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    latest = work / "latest.pth"
    wait_for_checkpoint(proc, latest, min_iter=1, timeout=300)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: the launcher and both workers
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    stopped = read_checkpoint(str(latest))["meta"]["iter"]
    assert 1 <= stopped < 50
    assert err.strip().splitlines()[-1] == (f"interrupted at iteration {stopped}; resume with: "
                                            + shlex.join(["solov2", *cmd[3:], "--resume", str(latest)]))
    assert sum("rank 0's BatchNorm running statistics are given to all processes" in ln
               for ln in out.splitlines()) == 1
    resumed = subprocess.run(demo_command(tmp_path, work, "--resume", str(latest)) + [f"max_iters={stopped + 1}"],
                             cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert read_checkpoint(str(latest))["meta"]["iter"] == stopped + 1


def test_helpers_alone_and_in_a_one_process_gloo_group(monkeypatch):
    """Without a group every helper answers for one process; in a real (one-process, gloo) group they take the
    collective path and give the same answers; torchrun is recognised by its three variables."""
    import torch
    import torch.distributed as dist

    from solov2 import distributed
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert not distributed.in_torchrun()
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not distributed.in_torchrun()  # LOCAL_RANK too
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert distributed.in_torchrun()
    assert (distributed.backend_for("cuda"), distributed.backend_for("cpu")) == ("nccl", "gloo")
    values = {"loss_b": torch.tensor(2.0), "loss_a": torch.tensor(0.5, dtype=torch.bfloat16)}

    def answers():
        return (distributed.get_rank(), distributed.get_world_size(), distributed.is_main_process(),
                distributed.all_gather_object({"k": 1}), distributed.reduce_mean(values),
                distributed.any_process(True), distributed.any_process(False))
    expected = (0, 1, True, [{"k": 1}], {"loss_a": 0.5, "loss_b": 2.0}, True, False)
    assert not distributed.is_distributed() and answers() == expected
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(distributed.free_port()))
    distributed.init_process_group(0, 1, "cpu")
    try:
        assert distributed.is_distributed() and dist.get_backend() == "gloo"
        assert answers() == expected
        distributed.barrier()
    finally:
        distributed.cleanup()
    assert not distributed.is_distributed()


@pytest.mark.parametrize("cpu_max, expected", [(None, 8), ("max 100000\n", 8), ("150000 100000\n", 2),
                                                ("100000 100000\n", 1), ("20000 100000\n", 1), ("garbage", 8),
                                                ("v1 -1", 8), ("v1 300000", 3), ("v1 1000000", 8)])
def test_usable_cores_are_the_affinity_mask_capped_by_a_cgroup_quota(monkeypatch, tmp_path, cpu_max, expected):
    """Each CPU training process gets usable cores // processes threads: in a container that sees the host's
    cores, the affinity mask and the cgroup's CPU quota (rounded up) are what it may use, not os.cpu_count()."""
    from solov2 import distributed
    monkeypatch.setattr(distributed.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(distributed.os, "cpu_count", lambda: 64)
    if cpu_max is not None and cpu_max.startswith("v1 "):  # cgroup v1, as on this project's own machines
        (tmp_path / "cpu").mkdir()
        (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(cpu_max[3:] + "\n")
        (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    elif cpu_max is not None:
        (tmp_path / "cpu.max").write_text(cpu_max)
    assert distributed.usable_cpu_cores(str(tmp_path)) == expected

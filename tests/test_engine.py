"""Training loop: schedule, exact resume (also after SIGKILL), NaN guard, and the CLI's one-line errors."""
import os
import signal
import subprocess
import sys

import pytest
import torch
from helpers import ROOT, wait_for_checkpoint

from solov2.checkpoint.io import read_checkpoint
from solov2.cli import main
from solov2.engine.launch import train_main
from solov2.engine.sampler import TrainSampler
from solov2.engine.schedule import build_schedule
from solov2.errors import TrainingError

TINY = str(ROOT / "tests/data/tiny_shapes.py")
AUGMENTED = str(ROOT / "tests/data/tiny_shapes_augmented.py")


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


@pytest.mark.slow  # two training runs, ~12 s
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
        assert torch.equal(a[k], b[k]), k  # bit for bit


@pytest.mark.slow
def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path):
    # Flips and two random train scales on: the resumed run must still end with the same bits.
    opts = ["max_iters=12", "evaluation.interval=-1", "checkpoint_config.latest_iters=3"]
    work = tmp_path / "run"
    cmd = [sys.executable, "-m", "solov2.cli", "train", AUGMENTED, "--work-dir", str(work), "--device", "cpu",
           "--cfg-options", *opts]
    # The reference runs in a fresh process too: an earlier test in this process may have changed torch's
    # thread count, and another summation order is not bit for bit the same.
    full = [*cmd[:cmd.index("--work-dir") + 1], str(tmp_path / "full"), *cmd[cmd.index("--work-dir") + 2:]]
    subprocess.run(full, cwd=ROOT, check=True, capture_output=True, timeout=600)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = work / "latest.pth"
    wait_for_checkpoint(proc, latest, min_iter=3, timeout=240)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    killed_at = read_checkpoint(str(latest))["meta"]["iter"]
    assert 3 <= killed_at < 12  # 4 iterations per epoch: mid-epoch or at an epoch boundary
    done = subprocess.run(cmd + ["--resume"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"iteration {killed_at}" in (work / "train.log").read_text()
    assert read_checkpoint(str(latest))["meta"]["iter"] == 12
    _assert_same_state(tmp_path / "full/latest.pth", latest)


@pytest.mark.slow  # a training run
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


@pytest.mark.slow  # a training run
def test_only_the_newest_epoch_checkpoints_are_kept(tmp_path):
    # 4 images / 2 per batch = 2 iterations per epoch; 8 iterations = 4 epochs; max_keep_ckpts = 2.
    train_main(TINY, str(tmp_path), device="cpu", cfg_options={
        "data.train.num_images": 4, "max_iters": 8, "evaluation.interval": -1, "checkpoint_config.latest_iters": 0})
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["epoch_3.pth", "epoch_4.pth", "latest.pth"]


# ----------------------------------------------------------------------------- exact resume, augmentation on
# AUGMENTED: 8 images / 2 per batch = 4 iterations per epoch; random flips and two random train scales.
SHORT = {"evaluation.interval": -1, "checkpoint_config.latest_iters": 0, "max_iters": 6}


def _state(path):
    ckpt = read_checkpoint(str(path))
    return ckpt["state_dict"], ckpt["optimizer"]["state"]


def _assert_same_state(a, b):
    (wa, oa), (wb, ob) = _state(a), _state(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k  # bit for bit
    for i in oa:
        for k, v in oa[i].items():
            assert torch.equal(v, ob[i][k]), (i, k)


# Training runs: in-process (~8 s) and with 2 loader workers (~12 s more: worker start-up).
@pytest.mark.slow  # four training runs
@pytest.mark.parametrize("workers", [0, 2])
def test_resume_with_augmentation_is_bit_exact(tmp_path, workers):
    import shutil
    opts = {**SHORT, "data.workers_per_gpu": workers}
    train_main(AUGMENTED, str(tmp_path / "full"), cfg_options=opts, device="cpu", seed=0)
    # Stopped after 5 iterations: latest.pth is mid-epoch (iteration 5), epoch_1.pth at the epoch boundary (4).
    train_main(AUGMENTED, str(tmp_path / "mid"), cfg_options={**opts, "max_iters": 5}, device="cpu", seed=0)
    shutil.copytree(tmp_path / "mid", tmp_path / "boundary")
    assert read_checkpoint(str(tmp_path / "mid/latest.pth"))["meta"]["iter"] == 5
    assert read_checkpoint(str(tmp_path / "boundary/epoch_1.pth"))["meta"]["iter"] == 4
    train_main(AUGMENTED, str(tmp_path / "mid"), resume="auto", cfg_options=opts, device="cpu", seed=0)
    train_main(AUGMENTED, str(tmp_path / "boundary"), resume=str(tmp_path / "boundary/epoch_1.pth"), cfg_options=opts,
               device="cpu", seed=0)
    for run in ("mid", "boundary"):
        assert read_checkpoint(str(tmp_path / run / "latest.pth"))["meta"]["iter"] == 6
        _assert_same_state(tmp_path / "full/latest.pth", tmp_path / run / "latest.pth")


def test_augmentation_is_random_but_a_function_of_seed_epoch_and_index():
    from solov2.data import SyntheticShapes
    from solov2.engine.rng import SeededSamples
    samples = SeededSamples(SyntheticShapes(num_images=16, image_size=32, flip_prob=0.5))
    sampler = TrainSampler(16, seed=0, keyed=True)
    keys = list(sampler)
    flipped = [not torch.equal(samples[k][0], samples.dataset.__class__(16, image_size=32)[k[0]][0]) for k in keys]
    assert 0 < sum(flipped) < 16  # some flipped, some not
    torch.manual_seed(123)  # the global RNG plays no part
    assert all(torch.equal(samples[k][0], samples[k][0]) for k in keys[:4])
    assert [torch.equal(samples[k][0], samples.dataset.__class__(16, image_size=32)[k[0]][0]) for k in keys] == \
        [not f for f in flipped]
    sampler.set_epoch(1)
    assert {i for i, _ in sampler} == set(range(16)) and dict(sampler) != dict(keys)  # new seeds every epoch


@pytest.mark.slow  # a training run
def test_resume_from_a_checkpoint_without_rng_states(tmp_path, caplog):
    opts = {**SHORT, "max_iters": 3}
    train_main(AUGMENTED, str(tmp_path), cfg_options={**opts, "max_iters": 2}, device="cpu", seed=0)
    latest = tmp_path / "latest.pth"
    ckpt = torch.load(latest, weights_only=True)
    assert len(ckpt["rng"]) == 1 and ckpt["rng"][0]["torch"].dtype == torch.uint8
    del ckpt["rng"]  # as written before RNG states were saved
    torch.save(ckpt, latest)
    train_main(AUGMENTED, str(tmp_path), resume="auto", cfg_options=opts, device="cpu", seed=0)
    notes = (tmp_path / "train.log").read_text().splitlines()
    assert sum("augmentation randomness cannot be restored" in line for line in notes) == 1
    assert read_checkpoint(str(latest))["meta"]["iter"] == 3


@pytest.mark.slow  # a training run
def test_accumulation_divides_by_the_group_size_and_logs_the_group_mean(tmp_path, monkeypatch):
    # 8 images / 2 per batch = 4 batches per epoch; accumulate_steps=3 -> groups of 3 and 1 batches.
    from solov2.engine.trainer import Trainer
    from solov2.models.solov2 import SOLOv2
    calls, grads, logged = [0], [], []

    def fake_forward(self, images, targets):
        calls[0] += 1  # loss_ins is the micro-batch's number; d loss_cate / d bias = 1 per micro-batch
        bias = self.bbox_head.solo_cate.bias
        return {"loss_ins": torch.tensor(float(calls[0])), "loss_cate": bias.sum()}

    original_step = Trainer._step

    def recording_step(self):
        grads.append(self.model.bbox_head.solo_cate.bias.grad.clone())
        original_step(self)

    monkeypatch.setattr(SOLOv2, "forward_train", fake_forward)
    monkeypatch.setattr(Trainer, "_step", recording_step)
    monkeypatch.setattr(Trainer, "_log", lambda self, values: logged.append(values))
    train_main(TINY, str(tmp_path), device="cpu", cfg_options={
        "data.train.num_images": 8, "accumulate_steps": 3, "max_iters": 2, "log_config.interval": 1,
        "evaluation.interval": -1, "optimizer.lr": 0.0, "optimizer.weight_decay": 0.0})
    assert calls[0] == 4 and len(grads) == 2
    for g in grads:  # the mean gradient of each group, the short last one included
        assert torch.allclose(g, torch.ones_like(g))
    assert [round(v["loss_ins"], 6) for v in logged] == [2.0, 4.0]  # mean of 1, 2, 3; then 4 alone
    # and without the config's weights: the Dice weight is 3 (the config's loss_ins), the focal weight 1
    assert [round(v["dice"], 6) for v in logged] == [round(2.0 / 3, 6), round(4.0 / 3, 6)]
    assert all(v["focal"] == v["loss_cate"] for v in logged)


# ----------------------------------------------------------------------------- Ctrl-C and checkpoint writing
def _sigint_self():
    os.kill(os.getpid(), signal.SIGINT)


def _train_args(work, *extra):
    return ["train", TINY, "--work-dir", str(work), "--device", "cpu", *extra, "--cfg-options", "max_iters=6",
            "evaluation.interval=-1", "checkpoint_config.latest_iters=2"]


@pytest.mark.slow  # a training run
@pytest.mark.parametrize("when", ["mid-iteration", "checkpoint-write"])
def test_ctrl_c_saves_and_says_how_to_resume(tmp_path, monkeypatch, capsys, when):
    from solov2.models.solov2 import SOLOv2
    calls = {"forward": 0, "save": 0}
    if when == "mid-iteration":
        original = SOLOv2.forward_train

        def forward(self, images, targets):
            calls["forward"] += 1
            if calls["forward"] == 3:
                _sigint_self()
            return original(self, images, targets)

        monkeypatch.setattr(SOLOv2, "forward_train", forward)
        expected_iter = 3
    else:
        real_save = torch.save

        def save(obj, f, *args, **kwargs):  # Ctrl-C twice inside the first checkpoint's serialization
            calls["save"] += 1

            class Interrupting:
                writes = 0

                def write(self, data):
                    Interrupting.writes += 1
                    if calls["save"] == 1 and Interrupting.writes in (2, 4):
                        _sigint_self()
                    return f.write(data)

                def flush(self):
                    f.flush()

            return real_save(obj, Interrupting(), *args, **kwargs)

        monkeypatch.setattr(torch, "save", save)
        expected_iter = 2  # latest.pth at iteration 2 (latest_iters=2) was being written
    work = tmp_path / "run"
    assert main(_train_args(work)) == 130
    err = capsys.readouterr().err.strip().splitlines()
    latest = work / "latest.pth"
    assert err[-1] == (f"interrupted at iteration {expected_iter}; resume with: solov2 "
                       f"{' '.join(_train_args(work))} --resume {latest}")
    assert read_checkpoint(str(latest))["meta"]["iter"] == expected_iter
    assert not [p for p in work.iterdir() if p.name.startswith(".tmp")]
    monkeypatch.undo()
    assert main(_train_args(work, "--resume", str(latest))) == 0
    assert read_checkpoint(str(latest))["meta"]["iter"] == 6


@pytest.mark.slow  # a training run
def test_sigint_to_the_process_group_with_loader_workers(tmp_path):
    # As a terminal sends Ctrl-C: to the main process and its data loader workers.
    work = tmp_path / "run"
    cmd = [sys.executable, "-m", "solov2.cli", "train", TINY, "--work-dir", str(work), "--device", "cpu",
           "--cfg-options", "max_iters=200", "evaluation.interval=-1", "checkpoint_config.latest_iters=2",
           "data.workers_per_gpu=2"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    latest = work / "latest.pth"
    wait_for_checkpoint(proc, latest, min_iter=2, timeout=240)
    os.killpg(proc.pid, signal.SIGINT)
    err = proc.communicate(timeout=240)[1]
    assert proc.returncode == 130, err[-2000:]
    stopped = read_checkpoint(str(latest))["meta"]["iter"]
    assert 2 <= stopped < 200
    assert err.strip().splitlines()[-1].endswith(f"resume with: solov2 {' '.join(cmd[3:])} --resume {latest}")
    assert "Traceback" not in err


def test_tools_train_says_how_to_resume_in_its_own_spelling(tmp_path, monkeypatch, capsys):
    import importlib.util

    from solov2.models.solov2 import SOLOv2
    original = SOLOv2.forward_train
    calls = [0]

    def forward(self, images, targets):
        calls[0] += 1
        if calls[0] == 2:
            _sigint_self()
        return original(self, images, targets)

    monkeypatch.setattr(SOLOv2, "forward_train", forward)
    spec = importlib.util.spec_from_file_location("tools_train", ROOT / "tools/train.py")
    tools_train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tools_train)
    work = tmp_path / "run"
    args = [TINY, "--work_dir", str(work), "--resume_from", str(tmp_path / "old.pth"), "--device", "cpu",
            "--cfg-options", "max_iters=4", "evaluation.interval=-1"]
    fresh = [a for a in args if "old.pth" not in a and a != "--resume_from"]
    monkeypatch.setattr(sys, "argv", ["tools/train.py", *fresh])
    assert tools_train.main() == 130
    expected = " ".join(["python", *sys.argv, "--resume_from", str(work / "latest.pth")])
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"interrupted at iteration 2; resume with: {expected}"
    from solov2.engine.launch import resume_command
    assert resume_command(["python", "tools/train.py", *args], ("--resume_from",), "new.pth") == \
        " ".join(["python", "tools/train.py", *args[:3], *args[5:], "--resume_from", "new.pth"])


@pytest.mark.slow  # a training run
def test_an_epoch_checkpoint_is_serialized_once(tmp_path, monkeypatch):
    # 4 images / 2 per batch = 2 iterations per epoch; 4 iterations: epoch_1, epoch_2 (each also latest.pth).
    real_save, paths = torch.save, []
    monkeypatch.setattr(torch, "save", lambda obj, f, *a, **k: (paths.append(f.name), real_save(obj, f, *a, **k)))
    train_main(TINY, str(tmp_path), device="cpu", cfg_options={
        "data.train.num_images": 4, "max_iters": 4, "evaluation.interval": -1, "checkpoint_config.latest_iters": 0})
    assert len(paths) == 2
    assert (tmp_path / "latest.pth").read_bytes() == (tmp_path / "epoch_2.pth").read_bytes()
    assert read_checkpoint(str(tmp_path / "latest.pth"))["meta"]["iter"] == 4


def test_optimizers_are_fused_where_torch_has_the_kernel_unless_the_config_says():
    from solov2.engine.trainer import build_optimizer
    model = torch.nn.Linear(3, 2)
    for kind in ("SGD", "AdamW"):
        assert build_optimizer(model, {"type": kind, "lr": 0.1}).defaults["fused"] is True
        assert not build_optimizer(model, {"type": kind, "lr": 0.1, "fused": False}).defaults["fused"]
        assert not build_optimizer(model, {"type": kind, "lr": 0.1, "foreach": True}).defaults["fused"]


@pytest.mark.parametrize("kind", ["SGD", "AdamW"])
def test_a_step_the_grad_scaler_skips_leaves_the_optimizer_untouched(kind):
    """fp16 AMP (CUDA) overflows in its first steps and the GradScaler skips them. Fused SGD wrote its momentum
    anyway (from uninitialized memory on a skipped first step): weights NaN at iteration 5 of the seed config
    with --amp on a GPU. Same scaler logic on the CPU here; the optimizer must match one that never saw the
    overflow."""
    from solov2.engine.trainer import build_optimizer
    torch.manual_seed(0)
    model, reference = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    reference.load_state_dict(model.state_dict())
    cfg = {"lr": 0.1, **({"momentum": 0.9, "weight_decay": 1e-4} if kind == "SGD" else {})}
    optimizer = build_optimizer(model, {"type": kind, **cfg}, grad_scaling=True)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16)
    x = torch.randn(4, 3)
    for overflow in (True, False, False):
        loss = model(x).square().sum() * (float("inf") if overflow else 1.0)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)  # as the trainer does before clipping and logging
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
    stock = getattr(torch.optim, kind)(reference.parameters(), **cfg)  # two steps, no overflow
    for _ in range(2):
        reference(x).square().sum().backward()
        stock.step()
        stock.zero_grad(set_to_none=True)
    for got, expected in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(got, expected)


@pytest.mark.slow  # training runs
@pytest.mark.parametrize("before", [False, True])
def test_cpu_training_flushes_denormals_then_restores_the_setting(tmp_path, monkeypatch, before):
    from solov2.engine.trainer import Trainer

    def flushed():  # torch has no getter: a denormal (1e-39 < 1.2e-38, float32's smallest normal) that a multiply
        return float(torch.tensor([1e-39]) * 2) == 0.0  # turns into 0 says that denormals are flushed

    seen, original = [], Trainer._step
    monkeypatch.setattr(Trainer, "_step", lambda self: (seen.append(flushed()), original(self))[1])
    torch.set_flush_denormal(before)
    try:
        assert flushed() is before
        train_main(TINY, str(tmp_path / "ok"), cfg_options={"max_iters": 2, "evaluation.interval": -1}, device="cpu")
        assert seen == [True, True]  # flushed while training
        assert flushed() is before  # the process's own setting again afterwards
        monkeypatch.setattr(Trainer, "_step", lambda self: 1 / 0)  # an error inside the run
        with pytest.raises(ZeroDivisionError):
            train_main(TINY, str(tmp_path / "err"), cfg_options={"max_iters": 2, "evaluation.interval": -1},
                       device="cpu")
        assert flushed() is before
    finally:
        torch.set_flush_denormal(False)


@pytest.mark.slow  # a training run
def test_the_end_of_training_says_where_the_checkpoint_is(tmp_path, capsys):
    work = tmp_path / "run"
    assert main(["train", TINY, "--work-dir", str(work), "--device", "cpu", "--cfg-options", "max_iters=2",
                 "data.train.num_images=4", "data.val.num_images=2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    table = max(i for i, line in enumerate(lines) if "mask AP" in line)  # the AP table (or "no detections")
    assert lines[-1].endswith(f"checkpoint: {work / 'latest.pth'} (solov2 eval / predict / export take it)")
    assert table < len(lines) - 1 and (work / "latest.pth").is_file()


@pytest.mark.slow  # a training run
def test_a_small_sets_scales_are_stored_in_the_checkpoint(tmp_path):
    from solov2 import Predictor
    augment = {"copy_paste": 1.0, "max_images": 4, "min_train_scale": (128, 128), "min_test_scale": (160, 160)}
    opts = {"data.train.num_images": 4, "max_iters": 1, "evaluation.interval": -1, "data.train.augment": augment}
    train_main(TINY, str(tmp_path), cfg_options=opts, device="cpu", seed=0)
    transform = read_checkpoint(str(tmp_path / "latest.pth"))["meta"]["config"]["model"]["transform"]
    # TINY's 96 px raised to the augment's minimums
    assert [list(s) for s in transform["train_scales"]] == [[128, 128]] and list(transform["test_scale"]) == [160, 160]
    assert "the model trains at [(128, 128)] and predicts at (160, 160)" in (tmp_path / "train.log").read_text()
    assert tuple(Predictor(str(tmp_path / "latest.pth")).cfg.model.transform.test_scale) == (160, 160)


@pytest.mark.slow  # a training run
def test_auto_scale_ranges_are_fitted_and_stored_in_the_checkpoint(tmp_path):
    from solov2 import Predictor
    from solov2.data import SyntheticShapes
    from solov2.data.report import data_report, propose_scale_ranges
    opts = {"data.train.num_images": 4, "max_iters": 1, "evaluation.interval": -1,
            "model.bbox_head.scale_ranges": "auto"}
    train_main(TINY, str(tmp_path), cfg_options=opts, device="cpu", seed=0)
    sizes = data_report(SyntheticShapes(num_images=4, seed=0, image_size=96), [], (96, 96)).sizes
    expected = [list(r) for r in propose_scale_ranges(sizes)]
    stored = read_checkpoint(str(tmp_path / "latest.pth"))["meta"]["config"]["model"]["bbox_head"]["scale_ranges"]
    assert [list(r) for r in stored] == expected
    assert "model.bbox_head.scale_ranges='auto': ((1, " in (tmp_path / "train.log").read_text()
    predictor = Predictor(str(tmp_path / "latest.pth"))  # prediction reads the same ranges
    assert [list(r) for r in predictor.cfg.model.bbox_head.scale_ranges] == expected
    assert predictor.model.bbox_head.scale_ranges != "auto"


def test_channels_last_trains_what_the_contiguous_model_computes(tmp_path):
    import copy

    from solov2.config import load_config
    from solov2.engine.trainer import Trainer
    assert Trainer(load_config(TINY, {"evaluation.interval": -1}), str(tmp_path / "default"),
                   device="cpu").model.backbone.conv1.weight.is_contiguous()  # off unless the config says
    trainer = Trainer(load_config(TINY, {"evaluation.interval": -1, "channels_last": True}), str(tmp_path),
                      device="cpu")
    convs = [m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    plain = copy.deepcopy(trainer.model).to(memory_format=torch.contiguous_format)  # same weights, same scale rng
    assert not convs[0].weight.is_contiguous() and plain.backbone.conv1.weight.is_contiguous()
    images, targets = next(iter(trainer.loader))
    trainer.model.train(), plain.train()
    ours, theirs = trainer.model(images, targets), plain(images, targets)
    assert ours.keys() == theirs.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-4, atol=1e-5)
    sum(ours.values()).backward()
    sum(theirs.values()).backward()
    for (name, a), b in zip(trainer.model.named_parameters(), plain.parameters()):
        if a.grad is not None:  # other summation orders: compared as whole tensors, relative to their norm
            relative = float((a.grad - b.grad).norm() / b.grad.norm().clamp(min=1e-12))
            assert relative < 1e-2, (name, relative)  # measured at most 0.005 (small BatchNorm biases)

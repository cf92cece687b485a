"""The collapse guard, per-branch gradient norms and the linear lr scaling, alone and inside training."""
import pytest
import torch
from helpers import ROOT, tiny_model

from solov2.engine.launch import train_main
from solov2.engine.monitor import BRANCHES, CollapseGuard, branch_grad_norms
from solov2.engine.schedule import scaled_lr

TINY = str(ROOT / "tests/data/tiny_shapes.py")


def test_guard_warns_once_after_patience_iterations_at_the_maximum():
    guard = CollapseGuard(3.0, patience=20, tol=1e-3, hint="lower the lr")
    assert all(guard.update(2.9985, i) is None for i in range(1, 30))  # 1.5e-3 below: not collapsed
    assert all(guard.update(3.0, i) is None for i in range(30, 49))  # 19 iterations at the maximum
    message = guard.update(2.9995, 49)
    assert "iterations 30..49" in message and "collapsed" in message and message.endswith("lower the lr")
    assert guard.update(3.0, 50) is None  # said once


def test_guard_counter_restarts_when_the_loss_moves():
    guard = CollapseGuard(3.0, patience=3)
    assert [guard.update(v, i) for i, v in enumerate([3.0, 3.0, 2.5, 3.0, 3.0])] == [None] * 5
    assert guard.update(3.0, 5) is not None


def test_branch_grad_norms_cover_every_branch_and_match_a_direct_norm():
    model = tiny_model().train()
    images = [torch.randint(0, 255, (3, 128, 128), dtype=torch.uint8)]
    masks = torch.zeros((1, 128, 128), dtype=torch.bool)
    masks[0, 30:80, 40:90] = True
    sum(model(images, [{"masks": masks, "labels": torch.tensor([1])}]).values()).backward()
    norms = branch_grad_norms(model)
    assert set(norms) == set(BRANCHES)
    direct = torch.stack([p.grad.norm() for n, p in model.named_parameters()
                          if n.startswith("bbox_head.solo_kernel") or n.startswith("bbox_head.kernel_convs")])
    assert abs(norms["kernel_branch"] - float(direct.norm())) < 1e-6 * max(1.0, norms["kernel_branch"])
    assert all(v > 0 for v in norms.values())


def test_scaled_lr_follows_the_linear_rule():
    assert scaled_lr(0.01, {"enable": True, "base_batch_size": 16}, 4) == 0.0025
    assert scaled_lr(0.01, {"enable": False, "base_batch_size": 16}, 4) == 0.01
    assert scaled_lr(0.01, None, 4) == 0.01


@pytest.mark.slow  # a training run, ~16 s
def test_training_warns_about_a_collapsed_mask_branch_and_logs_the_scaled_lr(tmp_path, monkeypatch, capsys):
    from solov2.models.solov2 import SOLOv2
    original = SOLOv2.forward_train

    def collapsed(self, images, targets):  # loss_ins pinned at its maximum, as after a collapse
        losses = original(self, images, targets)
        losses["loss_ins"] = losses["loss_ins"] * 0 + 3.0
        return losses

    monkeypatch.setattr(SOLOv2, "forward_train", collapsed)
    train_main(TINY, str(tmp_path), device="cpu",
               cfg_options={"max_iters": 22, "evaluation.interval": -1, "auto_scale_lr": {"base_batch_size": 8},
                            "checkpoint_config.latest_iters": 100})
    log = capsys.readouterr().out.splitlines()
    warnings = [line for line in log if "has collapsed" in line]
    assert len(warnings) == 1 and "iterations 1..20" in warnings[0] and "0.0025 for 2 images" in warnings[0]
    assert any("lr 0.0025 (optimizer.lr 0.01 is for 8" in line for line in log)

import math

import torch

from solov2.losses import dice_loss, sigmoid_focal_loss


def test_focal_loss_matches_formula():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.0], [-3.0, 1.5]])
    labels = torch.tensor([0, 2, 1])  # 2 = background
    alpha, gamma = 0.25, 2.0
    expected = 0.0
    for i in range(3):
        for c in range(2):
            p = 1 / (1 + math.exp(-logits[i, c].item()))
            if labels[i] == c:
                expected += -alpha * (1 - p) ** gamma * math.log(p)
            else:
                expected += -(1 - alpha) * p ** gamma * math.log(1 - p)
    got = sigmoid_focal_loss(logits, labels, num_classes=2, alpha=alpha, gamma=gamma, avg_factor=3.0)
    assert math.isclose(got.item(), expected / 3.0, rel_tol=1e-5)


def test_dice_loss_matches_formula():
    p = torch.tensor([[[0.9, 0.2], [0.0, 0.6]]])
    t = torch.tensor([[[1, 0], [0, 1]]], dtype=torch.uint8)
    inter = 0.9 + 0.6
    expected = 1 - 2 * inter / ((0.81 + 0.04 + 0.36) + 1e-3 + 2 + 1e-3)
    assert math.isclose(dice_loss(p, t).item(), expected, rel_tol=1e-6)
    assert dice_loss(t.float(), t).item() < 1e-3  # perfect prediction
    assert math.isclose(dice_loss(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4)).item(), 1.0)  # finite on empty


def test_losses_are_finite_in_half_precision():
    logits = (torch.randn(50, 8) * 30).half()
    labels = torch.randint(0, 9, (50,))
    assert torch.isfinite(sigmoid_focal_loss(logits, labels, 8, avg_factor=1.0))
    probs = torch.rand(3, 16, 16).half()
    assert torch.isfinite(dice_loss(probs, torch.zeros(3, 16, 16))).all()

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


def test_solov2_losses_normalise_by_positives_plus_one_and_apply_the_weights():
    from types import SimpleNamespace

    from torchvision.ops import sigmoid_focal_loss as tv_focal

    from solov2.losses import FocalLoss, solov2_losses
    g = torch.Generator().manual_seed(0)
    # two levels, one image, 2 classes: a 2x2 grid and a 1x1 grid -> 5 cells, level-major, row-major
    cate_preds = [torch.randn(1, 2, 2, 2, generator=g), torch.randn(1, 2, 1, 1, generator=g)]
    labels = torch.tensor([0, 2, 2, 1, 1])  # 2 = background: 3 positive cells
    mask_preds = torch.randn(3, 4, 4, generator=g)
    mask_targets = (torch.rand(3, 4, 4, generator=g) > 0.5).to(torch.uint8)
    targets = SimpleNamespace(cate_labels=labels, mask_targets=mask_targets)
    losses = solov2_losses(cate_preds, mask_preds, targets, num_classes=2,
                           loss_cate=FocalLoss(loss_weight=0.5), ins_loss_weight=2.0)
    # the cells in the order the labels use: level 0 row-major, then level 1
    flat = torch.cat([cate_preds[0][0].permute(1, 2, 0).reshape(4, 2), cate_preds[1][0].permute(1, 2, 0).reshape(1, 2)])
    onehot = torch.nn.functional.one_hot(labels, 3)[:, :2].float()
    focal_sum = tv_focal(flat, onehot, alpha=0.25, gamma=2.0, reduction="sum")
    torch.testing.assert_close(losses["loss_cate"], 0.5 * focal_sum / (3 + 1))  # num_pos + 1 = 4
    torch.testing.assert_close(losses["loss_ins"], 2.0 * dice_loss(mask_preds.sigmoid(), mask_targets).mean())
    # no positive cell: the Dice term is an exact zero that keeps the graph connected, the focal one / (0 + 1)
    empty = torch.zeros(0, 4, 4, requires_grad=True)
    none = solov2_losses(cate_preds, empty, SimpleNamespace(cate_labels=torch.full((5,), 2), mask_targets=empty),
                         num_classes=2, loss_cate=FocalLoss(), ins_loss_weight=2.0)
    assert none["loss_ins"].item() == 0.0 and none["loss_ins"].requires_grad
    torch.testing.assert_close(none["loss_cate"], tv_focal(flat, torch.zeros(5, 2), reduction="sum") / 1)

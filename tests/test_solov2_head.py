"""SOLOv2Head.loss against a loop-by-loop transcription of the official target assignment and Dice mean."""
import torch
import torch.nn.functional as F
from helpers import rect_masks, tiny_model

from solov2.losses import dice_loss
from solov2.models.solov2_head import SOLOv2Head


def ring(size: int, center: float, r_out: float, r_in: float) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    d = ((xx - center) ** 2 + (yy - center) ** 2).float().sqrt()
    return (d < r_out) & (d >= r_in)


def official_loss_ins(head, masks, kernels_flat, mask_feat):
    """The official SOLOv2 solov2_target_single + loss, one (instance, cell) pair at a time."""
    h, w = masks.shape[-2:]
    losses, offset, shared = [], 0, 0
    for num_grid, (lo, hi) in zip(head.num_grids, head.scale_ranges):
        owner = {}
        for k, m in enumerate(masks):
            ys, xs = torch.nonzero(m, as_tuple=True)
            x1, x2, y1, y2 = xs.min().float(), xs.max().float() + 1, ys.min().float(), ys.max().float() + 1
            if not lo <= float(torch.sqrt((x2 - x1) * (y2 - y1))) <= hi:
                continue
            half_w, half_h = 0.5 * (x2 - x1) * head.sigma, 0.5 * (y2 - y1) * head.sigma
            cy, cx = ys.float().mean(), xs.float().mean()
            cell = lambda v, size: int((v / size) // (1. / num_grid))  # noqa: E731  the official expression
            coord_w, coord_h = cell(cx, w), cell(cy, h)
            top = max(max(0, cell(cy - half_h, h)), coord_h - 1)
            down = min(min(num_grid - 1, cell(cy + half_h, h)), coord_h + 1)
            left = max(coord_w - 1, max(0, cell(cx - half_w, w)))
            right = min(min(num_grid - 1, cell(cx + half_w, w)), coord_w + 1)
            target = F.interpolate(m[None, None].float(), size=(h // 4, w // 4), mode="bilinear")[0, 0] >= 0.5
            for i in range(top, down + 1):
                for j in range(left, right + 1):
                    shared += (i, j) in owner
                    owner[(i, j)] = k
                    logits = kernels_flat[offset + i * num_grid + j] @ mask_feat.flatten(1)
                    losses.append(dice_loss(logits.sigmoid().view(1, h // 4, w // 4), target[None]))
        offset += num_grid * num_grid
    return head.loss_ins_weight * torch.cat(losses).mean(), shared


def test_ring_inside_a_ring_gives_the_official_pair_mean_dice():
    torch.manual_seed(0)
    model = tiny_model(num_classes=3)
    outer, inner = ring(128, 63.5, 44, 30), ring(128, 63.5, 22, 12)  # the inner ring sits in the outer's hole
    masks = torch.stack([outer, inner])
    labels = torch.tensor([0, 2])
    x = torch.randn(1, 3, 128, 128)
    torch.set_grad_enabled(False)
    cate, kernels, mask_feats = model.forward_features(x)
    loss = model.bbox_head.loss(cate, kernels, mask_feats, [masks], [labels])["loss_ins"]
    expected, shared = official_loss_ins(model.bbox_head, masks, model.bbox_head.flatten_kernels(kernels)[0],
                                         mask_feats[0])
    assert shared == 4  # the two centre regions share four cells (2x2 around the common centre)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    model.bbox_head.shared_cells = "last_owner"  # one mask per cell: a different (non-official) loss
    other = model.bbox_head.loss(cate, kernels, mask_feats, [masks], [labels])["loss_ins"]
    assert abs(float(other) - float(expected)) > 1e-4
    torch.set_grad_enabled(True)


def test_loss_ins_config_forms():
    head_a = tiny_model(**{"model.bbox_head.loss_ins": {"type": "DiceLoss", "use_sigmoid": True,
                                                         "loss_weight": 2.0}}).bbox_head
    assert head_a.loss_ins_weight == 2.0
    model = tiny_model()
    assert model.bbox_head.loss_ins_weight == 3.0


def test_pinned_loss_values_of_a_seeded_head():
    """Exact losses of a small seeded head on fixed random features and two images' masks.

    The numbers were computed once, with the code of commit 801dc84, by running this test's set-up and printing
    ``float(loss)``. They hold the head's initialisation, its forward pass, target assignment, dynamic masks,
    focal and Dice losses and their weights together: a change that moves them must say why in its commit
    message (a deliberate change of one of these), and then update them. The tolerance allows only float
    rounding of other CPUs and thread counts.
    """
    torch.manual_seed(0)
    head = SOLOv2Head(num_classes=3, in_channels=16, seg_feat_channels=32, stacked_convs=2, num_grids=[12, 8, 6, 4, 3],
                      scale_ranges=((1, 16), (8, 32), (16, 64), (32, 128), (64, 256)), ins_out_channels=8)
    g = torch.Generator().manual_seed(1)
    feats = [torch.randn(2, 16, s, s, generator=g) for s in (16, 8, 4, 2, 1)]  # P2..P6 of a 64 x 64 input
    mask_feats = torch.randn(2, 8, 16, 16, generator=g)
    masks = [rect_masks((64, 64), [(4, 6, 20, 18), (30, 10, 62, 60)]), rect_masks((64, 64), [(10, 10, 40, 30)])]
    labels = [torch.tensor([0, 2]), torch.tensor([1])]
    cate, kernels = head(feats)
    losses = head.loss(cate, kernels, mask_feats, masks, labels)
    assert set(losses) == {"loss_ins", "loss_cate"}
    torch.testing.assert_close(losses["loss_ins"].detach(), torch.tensor(1.653975486755371), rtol=1e-5, atol=0)
    torch.testing.assert_close(losses["loss_cate"].detach(), torch.tensor(1.0563713312149048), rtol=1e-5, atol=0)

import math

import torch

from solov2.ops import matrix_nms


def masks_from(rows):
    return torch.tensor(rows, dtype=torch.bool).view(len(rows), 1, -1)


def test_identical_masks_same_class_gaussian_and_linear():
    masks = masks_from([[1, 1, 1, 0], [1, 1, 1, 0]])
    labels = torch.tensor([0, 0])
    scores = torch.tensor([0.9, 0.8])
    out = matrix_nms(masks, labels, scores, kernel="gaussian", sigma=2.0)
    assert torch.allclose(out, torch.tensor([0.9, 0.8 * math.exp(-2.0)]))
    out = matrix_nms(masks, labels, scores, kernel="linear")
    assert torch.allclose(out, torch.tensor([0.9, 0.0]))


def test_different_classes_and_disjoint_masks_do_not_decay():
    masks = masks_from([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1]])
    out = matrix_nms(masks, torch.tensor([0, 1, 0]), torch.tensor([0.9, 0.8, 0.7]))
    assert torch.allclose(out, torch.tensor([0.9, 0.8, 0.7]))


def test_partial_overlap_value():
    # IoU of [1,1,1,0] and [0,1,1,1] is 2/4 = 0.5 -> gaussian decay exp(-2 * 0.25).
    masks = masks_from([[1, 1, 1, 0], [0, 1, 1, 1]])
    out = matrix_nms(masks, torch.tensor([3, 3]), torch.tensor([0.6, 0.5]))
    assert torch.allclose(out, torch.tensor([0.6, 0.5 * math.exp(-0.5)]))


def test_compensation_for_already_suppressed_masks():
    # A, B = A, C = A: C's decay by B is compensated by B's own suppression, but A still decays C fully.
    masks = masks_from([[1, 1, 0], [1, 1, 0], [1, 1, 0]])
    out = matrix_nms(masks, torch.tensor([0, 0, 0]), torch.tensor([0.9, 0.8, 0.7]))
    assert torch.allclose(out, torch.tensor([0.9, 0.8 * math.exp(-2), 0.7 * math.exp(-2)]))


def test_zero_and_one_inputs():
    assert matrix_nms(torch.zeros(0, 4, 4), torch.zeros(0, dtype=torch.long), torch.zeros(0)).shape == (0,)
    out = matrix_nms(torch.ones(1, 4, 4), torch.tensor([2]), torch.tensor([0.4]))
    assert torch.allclose(out, torch.tensor([0.4]))


def test_invariant_to_input_order_after_sorting():
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(12, 8, 8, generator=g) > 0.5
    labels = torch.randint(0, 3, (12,), generator=g)
    scores = torch.rand(12, generator=g)

    def run(perm):
        m, lab, s = masks[perm], labels[perm], scores[perm]
        order = s.argsort(descending=True)
        out = matrix_nms(m[order], lab[order], s[order])
        result = torch.empty_like(out)
        result[perm[order]] = out  # back to the original indexing
        return result

    assert torch.allclose(run(torch.arange(12)), run(torch.randperm(12, generator=g)))

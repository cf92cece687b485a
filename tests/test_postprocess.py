"""solov2.postprocess: the fixed-size post-processing for export graphs gives postprocess_single's instances."""
import pytest
import torch

from solov2.postprocess import TestConfig, masks_at_original_size, postprocess_fixed, postprocess_single

GRIDS, STRIDES = [12, 8, 6], [8.0, 16.0, 32.0]
CFG = TestConfig(nms_pre=40, max_per_img=15)


def _inputs(num_candidates: int, seed: int = 0):
    """Random kernels and mask features; ``num_candidates`` (cell, class) pairs scored above score_thr."""
    g = torch.Generator().manual_seed(seed)
    m, c, e = sum(s * s for s in GRIDS), 4, 8
    scores = torch.rand(m, c, generator=g) * 0.09  # all below score_thr 0.1
    picks = torch.randperm(m * c, generator=g)[:num_candidates]
    scores.view(-1)[picks] = 0.1 + 0.9 * torch.rand(num_candidates, generator=g)
    kernels = torch.randn(m, e, generator=g)
    mask_feat = torch.randn(e, 24, 40, generator=g)
    strides = torch.cat([torch.full((s * s,), st) for s, st in zip(GRIDS, STRIDES)])
    return scores, kernels, mask_feat, strides


# 0 candidates, fewer than nms_pre, more than nms_pre, more than 2 * nms_pre (the cap before the masks).
@pytest.mark.parametrize("num_candidates", [0, 12, 60, 150])
def test_fixed_postprocess_equals_postprocess_single(num_candidates):
    scores, kernels, mask_feat, strides = _inputs(num_candidates)
    image_size, original_size = (90, 150), (120, 200)
    expected = postprocess_single(scores, kernels, mask_feat, strides, image_size, original_size, CFG)
    got_scores, got_labels, got_probs = postprocess_fixed(scores, kernels, mask_feat, strides, CFG)
    assert got_scores.shape == got_labels.shape == (CFG.max_per_img,)
    assert got_probs.shape == (CFG.max_per_img, *mask_feat.shape[1:])
    keep = got_scores > 0
    assert keep.sum().item() == len(expected["scores"])
    if num_candidates:
        assert len(expected["scores"]) > 0
    torch.testing.assert_close(got_scores[keep], expected["scores"], rtol=0, atol=1e-6)
    assert torch.equal(got_labels[keep], expected["labels"])
    masks = masks_at_original_size(got_probs[keep], image_size, original_size, CFG.mask_thr)
    assert torch.equal(masks, expected["masks"])


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::FutureWarning")
def test_fixed_postprocess_traces_to_the_same_function():
    # Tracing freezes shapes and branches: a trace made with many candidates must still be right with few.
    args = _inputs(150)[1:]
    traced = torch.jit.trace(lambda s, k, f, st: postprocess_fixed(s, k, f, st, CFG), (_inputs(150)[0], *args),
                             check_trace=False)
    for n in (0, 12, 150):
        scores = _inputs(n)[0]
        for a, b in zip(traced(scores, *args), postprocess_fixed(scores, *args, CFG)):
            assert torch.equal(a, b)


def test_masks_to_boxes_are_pixel_edges_and_match_coco():
    import numpy as np
    from pycocotools import mask as mask_utils

    from solov2.postprocess import masks_to_boxes
    masks = torch.zeros((3, 10, 12), dtype=torch.bool)
    masks[0, 2:5, 3:9] = True  # rows 2..4, columns 3..8
    masks[1, 9, 11] = True  # one pixel in the last row and column
    boxes = masks_to_boxes(masks)  # masks[2] is empty
    assert boxes.dtype == torch.float32 and boxes.shape == (3, 4)
    assert boxes.tolist() == [[3, 2, 9, 5], [11, 9, 12, 10], [0, 0, 0, 0]]
    assert masks_to_boxes(torch.zeros((0, 5, 6), dtype=torch.bool)).shape == (0, 4)
    g = torch.Generator().manual_seed(0)
    random = torch.rand(20, 31, 17, generator=g) > 0.97
    rles = mask_utils.encode(np.asfortranarray(random.numpy().transpose(1, 2, 0).astype(np.uint8)))
    x, y, w, h = mask_utils.toBbox(rles).T  # COCO's x, y, w, h of the same masks
    np.testing.assert_array_equal(masks_to_boxes(random).numpy(), np.stack([x, y, x + w, y + h], 1))


def test_postprocess_single_gives_the_boxes_of_its_masks():
    from solov2.postprocess import masks_to_boxes
    result = postprocess_single(*_inputs(60), (96, 160), (120, 200), CFG)
    assert len(result["masks"]) > 0
    assert torch.equal(result["boxes"], masks_to_boxes(result["masks"]))
    empty = postprocess_single(*_inputs(0), (96, 160), (120, 200), CFG)
    assert empty["boxes"].shape == (0, 4) and empty["boxes"].dtype == torch.float32

"""The detector end to end on tiny inputs: training lowers the loss, eval returns well-formed results."""
import pytest
import torch
from helpers import image_with, rect_masks, tiny_model


def batch():
    masks_a = rect_masks((120, 100), [(10, 10, 50, 60), (55, 70, 95, 115)])
    masks_b = rect_masks((96, 128), [(30, 20, 100, 80)])
    images = [image_with(masks_a, 0), image_with(masks_b, 1)]
    targets = [{"masks": masks_a, "labels": torch.tensor([0, 2])}, {"masks": masks_b, "labels": torch.tensor([1])}]
    return images, targets


def test_training_steps_lower_the_loss():
    torch.manual_seed(0)
    model = tiny_model().train()
    images, targets = batch()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(8):
        out = model(images, targets)
        assert set(out) == {"loss_ins", "loss_cate"}
        loss = sum(out.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_all_background_batch_gives_zero_mask_loss_and_gradients_everywhere():
    model = tiny_model().train()
    images = [torch.zeros(3, 64, 64, dtype=torch.uint8)]
    targets = [{"masks": torch.zeros(0, 64, 64, dtype=torch.bool), "labels": torch.zeros(0, dtype=torch.long)}]
    out = model(images, targets)
    assert out["loss_ins"].item() == 0.0
    assert torch.isfinite(out["loss_cate"])
    sum(out.values()).backward()
    assert model.bbox_head.solo_kernel.weight.grad is not None  # DDP needs every parameter in the graph


def test_bf16_autocast_forward_is_finite():
    model = tiny_model().train()
    images, targets = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(images, targets)
    assert all(torch.isfinite(v) for v in out.values())


def test_eval_without_detections_returns_empty_tensors():
    model = tiny_model().eval()
    model.test_cfg.score_thr = 1.1  # nothing can pass
    results = model([torch.zeros(3, 70, 90, dtype=torch.uint8), torch.zeros(3, 50, 40)])
    assert [tuple(r["masks"].shape) for r in results] == [(0, 70, 90), (0, 50, 40)]
    for r in results:
        assert r["masks"].dtype == torch.bool and r["labels"].dtype == torch.int64
        assert r["scores"].dtype == torch.float32 and r["labels"].shape == r["scores"].shape == (0,)


def test_eval_results_are_at_original_size_and_sorted():
    torch.manual_seed(0)
    model = tiny_model().eval()
    with torch.no_grad():  # force confident category predictions so that post-processing has work to do
        model.bbox_head.solo_cate.bias.fill_(3.0)
    result = model([torch.randint(0, 255, (3, 77, 133), dtype=torch.uint8)])[0]
    n = result["labels"].shape[0]
    assert n > 0 and tuple(result["masks"].shape) == (n, 77, 133)
    assert (result["scores"][:-1] >= result["scores"][1:]).all()
    assert n <= model.test_cfg.max_per_img


@pytest.mark.parametrize("bad, message", [
    (torch.zeros(64, 64), "(3, H, W)"),
    (torch.zeros(1, 64, 64), "(3, H, W)"),
    (torch.zeros(3, 64, 64, dtype=torch.int32), "dtype"),
])
def test_bad_images_are_named(bad, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        tiny_model().eval()([bad])


def test_bad_targets_are_named():
    model = tiny_model().train()
    images, targets = batch()
    targets[0]["labels"] = torch.tensor([0])
    with pytest.raises(ValueError, match="2 masks but 1 labels"):
        model(images, targets)
    images, targets = batch()
    targets[1]["labels"] = torch.tensor([7])
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        model(images, targets)


# (grid S, row, col, class, logit) on the tiny model's grids 24, 20, 16, 12, 8: none, one level, two, all five.
@pytest.mark.parametrize("planted", [[], [(8, 4, 4, 2, 3.0)], [(24, 5, 8, 0, 3.0), (16, 12, 12, 1, 2.0)],
                                     [(24, 5, 8, 0, 3.0), (20, 15, 10, 1, 2.0), (16, 3, 12, 1, 2.2),
                                      (12, 8, 4, 0, 1.0), (8, 6, 6, 2, 2.8)]])
def test_lazy_inference_equals_postprocessing_everything(planted, monkeypatch):
    from helpers import plant_detections
    torch.manual_seed(0)
    model = tiny_model().eval()
    plant_detections(model, planted)
    images = [torch.randint(0, 256, (3, 100, 140), dtype=torch.uint8), torch.randint(0, 256, (3, 128, 96),
                                                                                     dtype=torch.uint8)]
    with torch.no_grad():
        expected = []  # everything computed, each image alone
        for image in images:
            image_list = model.transform([image], training=False)[0]
            expected += model.postprocess(*model.forward_features(image_list.tensors), image_list)
        kernel_levels, mask_branch = {}, []
        forward_kernel = model.bbox_head.forward_kernel

        def counting_forward_kernel(x):
            kernel_levels[x.shape[-1]] = kernel_levels.get(x.shape[-1], 0) + x.shape[0]
            return forward_kernel(x)
        monkeypatch.setattr(model.bbox_head, "forward_kernel", counting_forward_kernel)
        model.mask_feat_head.register_forward_hook(lambda m, args, out: mask_branch.append(out.shape[0]))
        got = model(images)  # the two images have different padded sizes: two groups
    # Only the levels with a planted cell (all planted cells pass score_thr) ran their kernel branch, once
    # for each image; the mask branch likewise, or not at all.
    assert kernel_levels == {s: len(images) for s, *_ in planted}
    assert sum(mask_branch) == (len(images) if planted else 0)
    assert sum(len(r["scores"]) for r in expected) >= len(planted)
    for g, e in zip(got, expected):
        assert set(g) == set(e)
        for key in e:
            assert g[key].dtype == e[key].dtype and torch.equal(g[key], e[key]), key


def _smooth_image(size, seed):
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, max(size[0] // 16, 1), max(size[1] // 16, 1), generator=g)
    return (torch.nn.functional.interpolate(low, size=size, mode="bilinear")[0] * 255).to(torch.uint8)


def test_each_image_gets_the_same_instances_in_any_batch():
    """Issue 14: an image's instances do not depend on the other images in its batch (SOLOv2 resizes every
    level of the whole padded input to its grid, so padding to a larger neighbour used to change them)."""
    from helpers import plant_detections
    torch.manual_seed(0)
    model = tiny_model().eval()
    plant_detections(model, [(24, 5, 8, 0, 3.0), (20, 15, 10, 1, 2.0), (16, 3, 12, 1, 2.2), (8, 6, 6, 2, 2.8)])
    # At the test scale 128: 80x128 and 91x128 (both padded to 96x128), 128x128, 128x51 (128x64).
    sizes = [(160, 256), (100, 140), (256, 256), (300, 120)]
    images = [_smooth_image(size, k) for k, size in enumerate(sizes)]
    with torch.no_grad():
        together = model(images)
        pairs = model([images[3], images[0]])
        for image, got, ref in zip(images, together, [model([im])[0] for im in images]):
            assert ref["scores"].numel() > 0
            assert torch.equal(got["labels"], ref["labels"])
            torch.testing.assert_close(got["scores"], ref["scores"], atol=1e-3, rtol=0)
            assert got["masks"].shape == ref["masks"].shape == (ref["masks"].shape[0], *image.shape[-2:])
            for g, r in zip(got["masks"], ref["masks"]):
                assert (g & r).sum() / (g | r).sum().clamp(min=1) >= 0.99
        for got, ref in zip(pairs, [together[3], together[0]]):
            assert torch.equal(got["labels"], ref["labels"])
            torch.testing.assert_close(got["scores"], ref["scores"], atol=1e-3, rtol=0)

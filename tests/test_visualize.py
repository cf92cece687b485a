"""draw_instances / save_image."""
import numpy as np
import pytest
import torch
from PIL import Image

from solov2.inference.visualize import draw_instances, instance_color, save_image


def _scene():
    image = np.full((60, 80, 3), 100, dtype=np.uint8)
    masks = torch.zeros((2, 60, 80), dtype=torch.bool)
    masks[0, 10:40, 10:40] = True
    masks[1, 30:55, 50:75] = True
    return image, masks, torch.tensor([0, 1]), torch.tensor([0.9, 0.3])


def test_masks_are_tinted_and_the_input_is_untouched():
    image, masks, labels, scores = _scene()
    before = image.copy()
    out = draw_instances(image, masks, labels, scores, ["disc", "star"])
    assert np.array_equal(image, before)
    assert out.shape == image.shape and out.dtype == np.uint8
    # the interior of each mask is blended half-way towards its instance colour (away from captions)
    for i, (y, x) in enumerate([(35, 35), (50, 70)]):
        expected = np.round(0.5 * 100 + 0.5 * np.array(instance_color(i))).astype(np.uint8)
        assert np.array_equal(out[y, x], expected)
    assert np.array_equal(out[58, 2], image[58, 2])  # background stays as it was
    assert (out[10:40, 10:40] != 100).any(axis=2).all()
    # a caption was written: some pixels near the top of instance 0 are neither background nor the tint
    tint0 = np.round(0.5 * 100 + 0.5 * np.array(instance_color(0))).astype(np.uint8)
    assert (out[2:20, 10:60] != tint0).any(axis=2).sum() > 20


def test_score_threshold_and_determinism():
    image, masks, labels, scores = _scene()
    out = draw_instances(image, masks, labels, scores, ["disc", "star"], score_thr=0.5)
    assert np.array_equal(out[50, 70], image[50, 70])  # instance 1 (score 0.3) not drawn
    assert not np.array_equal(out[35, 35], image[35, 35])
    again = draw_instances(image, masks, labels, scores, ["disc", "star"], score_thr=0.5)
    assert np.array_equal(out, again)
    assert instance_color(0) != instance_color(1)
    gt = draw_instances(image, masks.numpy(), labels.numpy(), None, ["disc", "star"])  # ground truth: no scores
    assert not np.array_equal(gt[50, 70], image[50, 70])


def test_empty_and_bad_inputs():
    image = np.zeros((20, 30, 3), dtype=np.uint8)
    out = draw_instances(image, torch.zeros((0, 20, 30), dtype=torch.bool), torch.zeros(0, dtype=torch.int64),
                         torch.zeros(0), ["a"])
    assert np.array_equal(out, image)
    with pytest.raises(ValueError, match="masks"):
        draw_instances(image, torch.zeros((1, 10, 10), dtype=torch.bool), torch.zeros(1, dtype=torch.int64),
                       torch.ones(1), ["a"])


def test_non_contiguous_image():
    image, masks, labels, scores = _scene()
    chw = torch.from_numpy(image).permute(2, 0, 1).contiguous()
    hwc_view = chw.permute(1, 2, 0).numpy()  # how a (3, H, W) tensor usually arrives: a strided view
    assert not hwc_view.flags.c_contiguous
    out = draw_instances(hwc_view, masks, labels, scores, ["disc", "star"])
    assert np.array_equal(out, draw_instances(image, masks, labels, scores, ["disc", "star"]))


def test_save_image_round_trip(tmp_path):
    image, masks, labels, scores = _scene()
    out = draw_instances(image, masks, labels, scores, ["disc", "star"])
    path = tmp_path / "sub" / "vis.png"
    save_image(str(path), out)
    assert np.array_equal(np.array(Image.open(path)), out)


def test_small_images_are_enlarged_when_asked():
    image, masks, labels, scores = _scene()
    out = draw_instances(image, masks, labels, scores, ["disc", "star"], min_side=256)
    assert out.shape == (60 * 5, 80 * 5, 3)  # smallest integer factor that makes 60 px at least 256
    expected = np.round(0.5 * 100 + 0.5 * np.array(instance_color(0))).astype(np.uint8)
    assert np.array_equal(out[35 * 5 + 2, 35 * 5 + 2], expected)


def test_boxes_are_drawn_when_given():
    image, masks, labels, scores = _scene()
    plain = draw_instances(image, masks, labels, scores, ["disc", "star"])
    boxes = np.array([[10, 10, 40, 40], [50, 30, 75, 55]], dtype=np.float32)  # pixel edges, as result["boxes"]
    boxed = draw_instances(image, masks, labels, scores, ["disc", "star"], boxes=boxes)
    assert np.array_equal(boxed[35, 39], np.array(instance_color(0), dtype=np.uint8))  # right edge: column 39
    assert np.array_equal(boxed[54, 60], np.array(instance_color(1), dtype=np.uint8))  # bottom edge: row 54
    assert np.array_equal(boxed[25, 25], plain[25, 25])  # inside: only the tint
    with pytest.raises(ValueError, match="1 boxes for 2 masks"):
        draw_instances(image, masks, labels, scores, ["disc", "star"], boxes=boxes[:1])

"""Target assignment on hand-built images; the expected cells are worked out by hand in the comments."""
import pytest
import torch
from helpers import rect_masks

from solov2.targets import build_targets, center_regions, masks_to_boxes_and_centers

GRIDS = [40, 36, 24, 16, 12]
RANGES = [(1, 56), (28, 112), (56, 224), (112, 448), (224, 896)]  # light-448


def test_boxes_and_mass_centers():
    masks = rect_masks((128, 128), [(20, 40, 52, 72)])
    boxes, centers, valid = masks_to_boxes_and_centers(masks)
    assert boxes.tolist() == [[20, 40, 52, 72]]
    assert centers.tolist() == [[35.5, 55.5]]
    assert valid.tolist() == [True]


def test_single_square_instance():
    # A 32x32 square at x 20..51, y 40..71 of a 128x128 image: sqrt(area) = 32 -> levels 0 (1..56) and 1 (28..112).
    # Mass center (35.5, 55.5); half region = 0.5 * 32 * 0.2 = 3.2 px.
    # Level 0, S=40: center cell (row floor(55.5*40/128)=17, col floor(35.5*40/128)=11); region rows
    #   floor(52.3*40/128)=16 .. floor(58.7*40/128)=18, cols floor(32.3*40/128)=10 .. floor(38.7*40/128)=12.
    # Level 1, S=36: center (15, 9); rows 14..16, cols max(9-1, floor(32.3*36/128)=9)=9 .. floor(38.7*36/128)=10.
    masks = rect_masks((128, 128), [(20, 40, 52, 72)])
    t = build_targets([masks], [torch.tensor([2])], (128, 128), GRIDS, RANGES, sigma=0.2, num_classes=5)
    sizes = [s * s for s in GRIDS]
    levels = torch.split(t.cate_labels, sizes)
    l0, l1 = levels[0].view(40, 40), levels[1].view(36, 36)
    expected0 = torch.full((40, 40), 5)
    expected0[16:19, 10:13] = 2
    expected1 = torch.full((36, 36), 5)
    expected1[14:17, 9:11] = 2
    assert torch.equal(l0, expected0)
    assert torch.equal(l1, expected1)
    assert all((lv == 5).all() for lv in levels[2:])
    cells0 = [r * 40 + c for r in range(16, 19) for c in range(10, 13)]
    cells1 = [1600 + r * 36 + c for r in range(14, 17) for c in range(9, 11)]
    assert t.pos_cell.tolist() == cells0 + cells1
    assert t.pos_image.tolist() == [0] * 15
    # Mask target at 1/4: the square covers rows 10..17 and cols 5..12 of the 32x32 map.
    expected_mask = torch.zeros(32, 32, dtype=torch.uint8)
    expected_mask[10:18, 5:13] = 1
    assert t.mask_targets.shape == (15, 32, 32)
    assert all(torch.equal(m, expected_mask) for m in t.mask_targets)


def test_region_is_limited_to_3x3_around_center():
    # A huge box with sigma 1 would cover many cells; the region is clipped to the center cell +- 1.
    boxes = torch.tensor([[0.0, 0.0, 128.0, 128.0]])
    centers = torch.tensor([[64.0, 64.0]])
    region = center_regions(boxes, centers, (128, 128), 12, sigma=1.0)
    # The centre 64/128 lies exactly on the boundary of cells 5 and 6: the official float32
    # (0.5 // (1 / 12)) = 5 picks cell 5, so the region is 4..6.
    assert region.tolist() == [[4, 6, 4, 6]]


def test_later_instance_owns_shared_cells_and_batch_layout():
    # Two identical-size squares whose regions overlap at level 0: the second owns the shared cells.
    masks = rect_masks((128, 128), [(20, 40, 52, 72), (24, 40, 56, 72)])
    labels = torch.tensor([0, 1])
    empty = torch.zeros((0, 128, 128), dtype=torch.bool)
    t = build_targets([empty, masks], [torch.zeros(0, dtype=torch.long), labels], (128, 128), GRIDS, RANGES,
                      0.2, 5, shared_cells="last_owner")
    assert t.cate_labels.shape == (2 * sum(s * s for s in GRIDS),)
    assert set(t.pos_image.tolist()) == {1}
    level0_img1 = t.cate_labels[1600:3200].view(40, 40)
    # Second square: center x 39.5 -> col floor(39.5*40/128)=12, cols 11..13; first: cols 10..12.
    assert level0_img1[16, 10] == 0 and level0_img1[16, 11] == 1 and level0_img1[16, 13] == 1
    # One mask target per positive cell, never two.
    assert len(t.pos_cell) == len(set(zip(t.pos_image.tolist(), t.pos_cell.tolist())))


def test_empty_and_degenerate_instances():
    masks = torch.zeros((1, 64, 64), dtype=torch.bool)  # zero-area mask: dropped, no crash
    t = build_targets([masks], [torch.tensor([1])], (64, 64), GRIDS, RANGES, 0.2, 5)
    assert (t.cate_labels == 5).all()
    assert t.mask_targets.shape == (0, 16, 16)


def test_cell_of_a_centre_on_a_boundary_follows_the_official_float32_division():
    # Centre x = 32 of 128 with S = 12: 0.25 // (1 / 12) in float32 is 2 (floor(0.25 * 12) would be 3).
    boxes = torch.tensor([[31.0, 31.0, 33.0, 33.0]])
    centers = torch.tensor([[32.0, 32.0]])
    region = center_regions(boxes, centers, (128, 128), 12, sigma=0.0)  # sigma 0: the centre cell alone
    assert region.tolist() == [[2, 2, 2, 2]]


def test_all_pairs_trains_every_instance_on_a_shared_cell():
    # The two squares of the test above: level 0 regions are rows 16..18, cols 10..12 (first) and
    # cols 11..13 (second); cols 11 and 12 are shared. Classes: the later instance's. Masks: one pair per
    # (instance, cell), first instance's 9 cells then the second's 9 (instance-major, cells row-major).
    masks = rect_masks((128, 128), [(20, 40, 52, 72), (24, 40, 56, 72)])
    t = build_targets([masks], [torch.tensor([0, 1])], (128, 128), GRIDS, RANGES, 0.2, 5)
    level0 = t.cate_labels[:1600].view(40, 40)
    assert level0[16, 10] == 0 and level0[16, 11] == 1 and level0[16, 12] == 1 and level0[16, 13] == 1
    first = [r * 40 + c for r in range(16, 19) for c in range(10, 13)]
    second = [r * 40 + c for r in range(16, 19) for c in range(11, 14)]
    level0_pairs = t.pos_cell[t.pos_cell < 1600].tolist()
    assert level0_pairs == first + second
    small = torch.nn.functional.interpolate(masks[None].float(), size=(32, 32), mode="bilinear")[0] >= 0.5
    assert torch.equal(t.mask_targets[0].bool(), small[0]) and torch.equal(t.mask_targets[9].bool(), small[1])


def test_a_batch_is_each_image_assigned_alone_and_concatenated():
    """The batch is assigned at once; the result must be the per-image assignments side by side: category grids
    image by image within each level, pairs image-major, each image's own instances owning its cells."""
    from solov2.data.synthetic import SyntheticShapes
    data = SyntheticShapes(4, seed=3, image_size=(128, 160))
    masks, labels = zip(*((t["masks"], t["labels"]) for _, t in (data[i] for i in range(4))))
    masks, labels = list(masks), list(labels)
    masks[1], labels[1] = masks[1][:0], labels[1][:0]  # an image without instances
    ranges = [(1, 32), (16, 64), (32, 128), (64, 256), (128, 512)]
    for mode in ("all_pairs", "last_owner"):
        batch = build_targets(masks, labels, (128, 160), GRIDS, ranges, 0.2, 5, mode)
        alone = [build_targets([m], [lb], (128, 160), GRIDS, ranges, 0.2, 5, mode) for m, lb in zip(masks, labels)]
        assert len(batch.pos_cell) > 50
        assert torch.equal(batch.pos_image, torch.cat([torch.full_like(a.pos_cell, i) for i, a in enumerate(alone)]))
        assert torch.equal(batch.pos_cell, torch.cat([a.pos_cell for a in alone]))
        assert torch.equal(batch.mask_targets, torch.cat([a.mask_targets for a in alone]))
        levels = [torch.stack(per_image) for per_image in zip(*(a.cate_labels.split([s * s for s in GRIDS])
                                                               for a in alone))]
        assert torch.equal(batch.cate_labels, torch.cat([lv.flatten() for lv in levels]))
    with pytest.raises(ValueError, match="shared_cells"):
        build_targets(masks, labels, (128, 160), GRIDS, ranges, 0.2, 5, "first_owner")

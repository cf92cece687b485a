"""SOLO target assignment: which grid cells of which FPN level are responsible for which instance.

For every instance (Sec. 3 of SOLO / SOLOv2):
1. its level is chosen by ``sqrt(w * h)`` of its box falling in the level's ``scale_range`` (ranges overlap,
   so an instance can be trained on two levels);
2. its *center region* is its mass center +- ``sigma`` times half its box size, in grid cells, clipped to
   the 3x3 cells around the cell holding the mass center;
3. every cell of the center region is positive, with the instance's class and its mask, downsampled to
   the mask feature's 1/4 resolution, as the mask target.

Where center regions of two instances overlap in a cell (``shared_cells``):
- ``"all_pairs"`` (default, the official SOLO code): the cell takes the later instance's class, and every
  (instance, cell) pair is a mask target, so a shared cell trains both masks with its one kernel and the
  Dice loss is the mean over pairs;
- ``"last_owner"``: the later instance owns the cell for class and mask (one mask target per cell).

Cells are found as the official code does, ``(v / size) // (1 / S)`` in float32, which differs from
``floor(v / size * S)`` for a centre exactly on a cell boundary.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

SHARED_CELLS = ("all_pairs", "last_owner")


@dataclass
class SOLOv2Targets:
    """Targets of a batch, laid out like the flattened predictions.

    Attributes:
        cate_labels: ``(sum_l B * S_l^2,)`` int64, level-major, then image, then row-major cell;
            ``num_classes`` marks background.
        pos_image: ``(P,)`` int64 image index of each (instance, positive cell) pair.
        pos_cell: ``(P,)`` int64 index of the pair's cell among all levels' cells of that image
            (``offset_l + row * S_l + col``), matching ``SOLOv2Head.flatten_kernels``; with
            ``shared_cells="all_pairs"`` a cell shared by k instances appears k times.
        mask_targets: ``(P, H/4, W/4)`` uint8 mask target of each pair.
    """

    cate_labels: Tensor
    pos_image: Tensor
    pos_cell: Tensor
    mask_targets: Tensor


def masks_to_boxes_and_centers(masks: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(N, H, W)`` bool -> boxes ``(N, 4)`` x1y1x2y2 (x2, y2 exclusive), mass centers ``(N, 2)`` (x, y),
    and ``(N,)`` bool valid (non-empty) flags. Float32."""
    n, h, w = masks.shape
    m = masks.float()
    cols, rows = m.sum(1), m.sum(2)  # (N, W), (N, H)
    area = cols.sum(1)
    valid = area > 0
    xs = torch.arange(w, device=masks.device, dtype=torch.float32)
    ys = torch.arange(h, device=masks.device, dtype=torch.float32)
    cx = (cols * xs).sum(1) / area.clamp(min=1)
    cy = (rows * ys).sum(1) / area.clamp(min=1)
    has_col, has_row = cols > 0, rows > 0
    x1 = torch.where(has_col, xs, torch.full_like(xs, w)).amin(1)
    x2 = torch.where(has_col, xs + 1, torch.zeros_like(xs)).amax(1)
    y1 = torch.where(has_row, ys, torch.full_like(ys, h)).amin(1)
    y2 = torch.where(has_row, ys + 1, torch.zeros_like(ys)).amax(1)
    return torch.stack([x1, y1, x2, y2], 1), torch.stack([cx, cy], 1), valid


def center_regions(boxes: Tensor, centers: Tensor, image_size: tuple[int, int], num_grid: int,
                   sigma: float) -> Tensor:
    """Grid-cell rectangles ``(K, 4)`` int64 (top, bottom, left, right, inclusive) of K instances' center regions.

    ``image_size`` is the padded input's (H, W): the grid spans the whole padded image, as the head's features do.
    """
    h, w = image_size
    half_w = 0.5 * (boxes[:, 2] - boxes[:, 0]) * sigma
    half_h = 0.5 * (boxes[:, 3] - boxes[:, 1]) * sigma
    cx, cy = centers[:, 0], centers[:, 1]

    def cell(v: Tensor, size: int) -> Tensor:
        # The official ``(v / size) // (1. / S)``: in float32 a centre exactly on a boundary falls in the
        # lower cell (0.25 // (1 / 12) = 2), where ``floor(v / size * S)`` would give 3.
        return torch.div(v.float() / size, 1.0 / num_grid, rounding_mode="floor").long()

    coord_w, coord_h = cell(cx, w), cell(cy, h)
    top = torch.maximum(cell(cy - half_h, h).clamp(min=0), coord_h - 1)
    bottom = torch.minimum(cell(cy + half_h, h).clamp(max=num_grid - 1), coord_h + 1)
    left = torch.maximum(cell(cx - half_w, w).clamp(min=0), coord_w - 1)
    right = torch.minimum(cell(cx + half_w, w).clamp(max=num_grid - 1), coord_w + 1)
    return torch.stack([top, bottom, left, right], 1)


def _cover(regions: Tensor, num_grid: int) -> Tensor:
    """``(K, 4)`` regions -> ``(K, S, S)`` bool: which cells each instance's center region covers."""
    r = torch.arange(num_grid, device=regions.device)
    inside_rows = (r[None] >= regions[:, 0:1]) & (r[None] <= regions[:, 1:2])  # (K, S)
    inside_cols = (r[None] >= regions[:, 2:3]) & (r[None] <= regions[:, 3:4])
    return inside_rows[:, :, None] & inside_cols[:, None, :]


def _assign_level(cover: Tensor, image_of: Tensor, num_images: int, shared_cells: str
                  ) -> tuple[Tensor, Tensor, Tensor]:
    """One level of a batch: ``(K, S, S)`` cover of K instances, ``(K,)`` image of each (non-decreasing) ->
    (``(B, S*S)`` owner per cell, -1 for none; ``(P,)`` pair instance; ``(P,)`` pair cell).

    The owner (whose class a cell takes) is the image's last instance covering it; the pairs are every covering
    instance (``"all_pairs"``) or the owner only (``"last_owner"``), instance-major, cells row-major.
    """
    cover = cover.flatten(1)  # (K, S*S)
    owner = torch.full((num_images, cover.shape[1]), -1, dtype=torch.int64, device=cover.device)
    if cover.shape[0]:
        ids = torch.arange(cover.shape[0], device=cover.device)[:, None].expand_as(cover)
        owner.scatter_reduce_(0, image_of[:, None].expand_as(cover), torch.where(cover, ids, -1), "amax")
    if shared_cells == "last_owner":
        img, cell = torch.nonzero(owner >= 0, as_tuple=True)
        return owner, owner[img, cell], cell
    inst, cell = torch.nonzero(cover, as_tuple=True)
    return owner, inst, cell


def build_targets(gt_masks: list[Tensor], gt_labels: list[Tensor], image_size: tuple[int, int],
                  num_grids: list[int], scale_ranges: list[tuple[float, float]], sigma: float = 0.2,
                  num_classes: int = 80, shared_cells: str = "all_pairs") -> SOLOv2Targets:
    """Targets of a batch, see :class:`SOLOv2Targets`.

    Args:
        gt_masks: per image ``(N_i, H, W)`` bool instance masks, all padded to ``image_size`` (H, W multiples of 4).
        gt_labels: per image ``(N_i,)`` int64 in ``[0, num_classes)``.

    The whole batch is assigned at once, level by level (a loop over images and levels cost the demo's training
    step 16 ms of small operations); the pairs come out image-major, then level, instance and cell, as if each
    image had been assigned alone and the results concatenated.
    """
    if shared_cells not in SHARED_CELLS:
        raise ValueError(f"shared_cells must be one of {SHARED_CELLS}, got {shared_cells!r}")
    h, w = image_size
    num_images = len(gt_masks)
    masks, labels = torch.cat(gt_masks), torch.cat(gt_labels)
    device = masks.device
    image_of = torch.repeat_interleave(torch.arange(num_images, device=device),  # each instance's image
                                       torch.tensor([len(m) for m in gt_masks], device=device))
    boxes, centers, valid = masks_to_boxes_and_centers(masks)
    scales = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    if masks.shape[0]:
        small = F.interpolate(masks[None].float(), size=(h // 4, w // 4), mode="bilinear", align_corners=False)[0]
        small = (small >= 0.5).to(torch.uint8)
    else:
        small = masks.new_zeros((0, h // 4, w // 4), dtype=torch.uint8)
    cate_levels, pair_image, pair_cell, pair_inst = [], [], [], []
    offset = 0
    for num_grid, (lo, hi) in zip(num_grids, scale_ranges):
        hit = torch.nonzero(valid & (scales >= lo) & (scales <= hi)).flatten()
        cover = _cover(center_regions(boxes[hit], centers[hit], (h, w), num_grid, sigma), num_grid)
        owner, inst, cell = _assign_level(cover, image_of[hit], num_images, shared_cells)
        cate = torch.full_like(owner, num_classes)
        owned = owner >= 0
        cate[owned] = labels[hit[owner[owned]]]
        cate_levels.append(cate.flatten())
        pair_inst.append(hit[inst])
        pair_image.append(image_of[hit[inst]])
        pair_cell.append(cell + offset)
        offset += num_grid * num_grid
    pos_image, order = torch.sort(torch.cat(pair_image), stable=True)  # level-major -> image-major
    return SOLOv2Targets(cate_labels=torch.cat(cate_levels), pos_image=pos_image,
                         pos_cell=torch.cat(pair_cell)[order], mask_targets=small[torch.cat(pair_inst)[order]])

"""From head outputs to instances: score threshold, dynamic masks, maskness, Matrix NMS, resize back."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from solov2.ops.dynamic_masks import dynamic_masks
from solov2.ops.matrix_nms import matrix_nms


@dataclass
class TestConfig:
    """Post-processing settings (the official ``test_cfg``)."""

    __test__ = False  # not a test class, whatever its name says (pytest collects Test* classes it sees)
    nms_pre: int = 500
    score_thr: float = 0.1
    mask_thr: float = 0.5
    update_thr: float = 0.05
    kernel: str = "gaussian"
    sigma: float = 2.0
    max_per_img: int = 100


def points_nms(heat: Tensor, kernel: int = 2) -> Tensor:
    """Keep a cell's score only where it is the max of its 2x2 neighbourhood (up-left): ``(B, C, S, S)``."""
    hmax = F.max_pool2d(heat, (kernel, kernel), stride=1, padding=1)
    return heat * (hmax[:, :, :-1, :-1] == heat)


def cell_scores(cate_pred: Tensor) -> Tensor:
    """One level's ``(B, C, S, S)`` category logits -> ``(B, S*S, C)`` float32 probabilities after
    :func:`points_nms`, cells in row-major order."""
    return points_nms(cate_pred.float().sigmoid()).permute(0, 2, 3, 1).flatten(1, 2)


def empty_result(size: tuple[int, int], device: torch.device) -> dict[str, Tensor]:
    return {"masks": torch.zeros((0, *size), dtype=torch.bool, device=device),
            "labels": torch.zeros(0, dtype=torch.int64, device=device),
            "scores": torch.zeros(0, dtype=torch.float32, device=device),
            "boxes": torch.zeros((0, 4), dtype=torch.float32, device=device)}


def masks_to_boxes(masks: Tensor) -> Tensor:
    """``(N, H, W)`` bool masks -> ``(N, 4)`` float32 boxes ``x1, y1, x2, y2`` in pixels, edges not centres:
    a mask covering columns 3..5 gives ``x1 = 3, x2 = 6``, so ``x2 - x1`` is the width that COCO's
    ``bbox`` (x, y, w, h; pycocotools ``toBbox``) gives for the same mask. An empty mask gives zeros."""
    n, h, w = masks.shape
    if n == 0:
        return torch.zeros((0, 4), dtype=torch.float32, device=masks.device)
    cols, rows = masks.any(1), masks.any(2)  # (N, W), (N, H)
    # argmax returns the first maximum: the first True from the start, and (flipped) from the end.
    x1 = cols.byte().argmax(1)
    x2 = w - cols.flip(1).byte().argmax(1)
    y1 = rows.byte().argmax(1)
    y2 = h - rows.flip(1).byte().argmax(1)
    boxes = torch.stack([x1, y1, x2, y2], 1).float()
    return boxes * cols.any(1, keepdim=True)  # empty masks: zeros


def postprocess_single(cate_scores: Tensor, kernels: Tensor, mask_feat: Tensor, cell_strides: Tensor,
                       image_size: tuple[int, int], original_size: tuple[int, int], cfg: TestConfig,
                       kernel_size: int = 1) -> dict[str, Tensor]:
    """Instances of one image.

    Args:
        cate_scores: ``(M, C)`` per-cell class probabilities after :func:`points_nms`, M = sum S^2.
        kernels: ``(M, E*k*k)`` dynamic kernels.
        mask_feat: ``(E, Hp/4, Wp/4)`` the mask feature of the padded input.
        cell_strides: ``(M,)`` stride of each cell's level.
        image_size: (h, w) of the resized image inside the padded input.
        original_size: (H, W) of the image as given to the model.
    Returns: ``{"masks": (N, H, W) bool, "labels": (N,) int64, "scores": (N,) float32, "boxes": (N, 4)
    float32}``, boxes from the masks (:func:`masks_to_boxes`, xyxy in the image's pixels).
    """
    device = mask_feat.device
    inds = torch.nonzero(cate_scores > cfg.score_thr)
    if inds.numel() == 0:
        return empty_result(original_size, device)
    scores = cate_scores[inds[:, 0], inds[:, 1]].float()
    labels = inds[:, 1]
    # Kernel matmuls are the costliest step here: keep only the nms_pre best candidates before them.
    if scores.numel() > cfg.nms_pre * 2:
        top = scores.topk(cfg.nms_pre * 2).indices
        inds, scores, labels = inds[top], scores[top], labels[top]
    seg_preds = dynamic_masks(mask_feat, kernels[inds[:, 0]], kernel_size).float().sigmoid()
    seg_masks = seg_preds > cfg.mask_thr
    sum_masks = seg_masks.sum((1, 2)).float()
    keep = sum_masks > cell_strides[inds[:, 0]]  # drop masks smaller than the level's stride
    if not keep.any():
        return empty_result(original_size, device)
    seg_preds, seg_masks, sum_masks = seg_preds[keep], seg_masks[keep], sum_masks[keep]
    scores, labels = scores[keep], labels[keep]
    # Maskness (paper, Sec. 4.2): rescore by the mean probability inside the binary mask.
    scores = scores * (seg_preds * seg_masks).sum((1, 2)) / sum_masks
    order = scores.argsort(descending=True)[: cfg.nms_pre]
    seg_preds, seg_masks, sum_masks = seg_preds[order], seg_masks[order], sum_masks[order]
    scores, labels = scores[order], labels[order]
    scores = matrix_nms(seg_masks, labels, scores, kernel=cfg.kernel, sigma=cfg.sigma, sum_masks=sum_masks)
    keep = scores >= cfg.update_thr
    if not keep.any():
        return empty_result(original_size, device)
    seg_preds, scores, labels = seg_preds[keep], scores[keep], labels[keep]
    order = scores.argsort(descending=True)[: cfg.max_per_img]
    seg_preds, scores, labels = seg_preds[order], scores[order], labels[order]
    # Only the survivors are upsampled.
    masks = masks_at_original_size(seg_preds, image_size, original_size, cfg.mask_thr)
    return {"masks": masks, "labels": labels, "scores": scores, "boxes": masks_to_boxes(masks)}


def masks_at_original_size(mask_probs: Tensor, image_size: tuple[int, int], original_size: tuple[int, int],
                           mask_thr: float) -> Tensor:
    """``(N, Hp/4, Wp/4)`` mask probabilities of the padded input -> ``(N, H0, W0)`` bool: upsampled to the
    padded input, cropped to the resized image ``image_size``, resized to ``original_size``, thresholded."""
    if mask_probs.shape[0] == 0:
        return torch.zeros((0, *original_size), dtype=torch.bool, device=mask_probs.device)
    h, w = image_size
    pad_size = (mask_probs.shape[-2] * 4, mask_probs.shape[-1] * 4)
    probs = F.interpolate(mask_probs[None], size=pad_size, mode="bilinear", align_corners=False)[:, :, :h, :w]
    probs = F.interpolate(probs, size=original_size, mode="bilinear", align_corners=False)[0]
    return probs > mask_thr


def postprocess_fixed(cate_scores: Tensor, kernels: Tensor, mask_feat: Tensor, cell_strides: Tensor,
                      cfg: TestConfig, kernel_size: int = 1) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`postprocess_single` up to its upsampling, with fixed-size tensors and no data-dependent
    branches, so that an exported ONNX / TorchScript graph can hold it (Matrix NMS included).

    Args: as :func:`postprocess_single`.
    Returns: ``scores (D,)`` float32 descending, ``labels (D,)`` int64, ``mask_probs (D, Hp/4, Wp/4)`` float32
    at the mask feature's resolution, ``D = min(max_per_img, nms_pre, M*C)``. Rows with score 0 are padding;
    the others are :func:`postprocess_single`'s instances (masks: upsample x4, crop to the image, resize to
    the original size, threshold at ``mask_thr``; :func:`solov2.deploy.export.postprocess_exported` does it).

    Why the results are the same: candidates that :func:`postprocess_single` drops (score, mask area,
    ``update_thr``) get score 0 here instead, which sorts them after every kept one; Matrix NMS decays a
    mask only by higher-scoring ones, so they change nothing.
    """
    m, c = cate_scores.shape
    scores, flat = cate_scores.flatten().topk(min(2 * cfg.nms_pre, m * c))
    cells, labels = flat // c, flat % c
    seg_preds = dynamic_masks(mask_feat, kernels[cells], kernel_size).float().sigmoid()
    seg_masks = seg_preds > cfg.mask_thr
    sum_masks = seg_masks.sum((1, 2)).float()
    valid = (scores > cfg.score_thr) & (sum_masks > cell_strides[cells])
    maskness = (seg_preds * seg_masks).sum((1, 2)) / sum_masks.clamp(min=1)
    scores = torch.where(valid, scores * maskness, torch.zeros_like(scores))
    scores, order = scores.topk(min(cfg.nms_pre, scores.numel()))
    seg_preds, labels = seg_preds[order], labels[order]
    scores = matrix_nms(seg_masks[order], labels, scores, kernel=cfg.kernel, sigma=cfg.sigma,
                        sum_masks=sum_masks[order])
    scores = torch.where(scores >= cfg.update_thr, scores, torch.zeros_like(scores))
    scores, order = scores.topk(min(cfg.max_per_img, scores.numel()))
    return scores, labels[order], seg_preds[order]

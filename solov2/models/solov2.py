"""The SOLOv2 detector: ResNet + FPN + mask feature branch + dynamic-kernel head."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..postprocess import TestConfig, cell_scores, empty_result, postprocess_single
from .mask_feat_head import MaskFeatHead
from .solov2_head import SOLOv2Head
from .transform import ImageList, ImageTransform


class SOLOv2(nn.Module):
    """SOLOv2 (Wang et al., NeurIPS 2020).

    ``model(images, targets)`` in training mode returns ``{"loss_ins": Tensor, "loss_cate": Tensor}``;
    ``model(images)`` in eval mode returns one dict per image with ``masks`` ``(N, H, W)`` bool at the
    image's own size, ``labels`` ``(N,)`` int64 in ``[0, num_classes)`` and ``scores`` ``(N,)`` float32.

    Args (of ``forward``):
        images: list of ``(3, H, W)`` RGB tensors, uint8 or float on the 0..255 scale, any sizes, or a
            ``(B, 3, H, W)`` tensor. Resizing, normalization and padding happen inside (``self.transform``).
        targets: training only; per image ``{"masks": (N, H, W) bool, "labels": (N,) int64}``.

    Example::

        >>> from solov2 import build_model, load_config
        >>> model = build_model(load_config("configs/solov2/coco/solov2_light_448_r18_fpn_3x.py")).eval()
        >>> results = model([torch.randint(0, 255, (3, 300, 400), dtype=torch.uint8)])
    """

    def __init__(self, backbone: nn.Module, neck: nn.Module, mask_feat_head: MaskFeatHead, bbox_head: SOLOv2Head,
                 transform: ImageTransform | None = None, test_cfg: TestConfig | None = None):
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.mask_feat_head = mask_feat_head
        self.bbox_head = bbox_head
        self.transform = transform or ImageTransform()
        self.test_cfg = test_cfg or TestConfig()

    @property
    def num_classes(self) -> int:
        return self.bbox_head.num_classes

    def forward(self, images, targets: list[dict] | None = None):
        if self.training:
            if targets is None:
                raise ValueError("SOLOv2: targets are required in training mode")
            return self.forward_train(images, targets)
        return self.inference(images)

    def forward_features(self, batch: Tensor) -> tuple[list[Tensor], list[Tensor], Tensor]:
        """Padded, normalized ``(B, 3, Hp, Wp)`` -> (category logits per level, kernels per level, mask features)."""
        feats = self.neck(self.backbone(batch))
        mask_feats = self.mask_features(feats)
        cate_preds, kernel_preds = self.bbox_head(feats)
        return cate_preds, kernel_preds, mask_feats

    def mask_features(self, feats: list[Tensor]) -> Tensor:
        """FPN outputs -> ``(B, E, Hp/4, Wp/4)`` mask features, from the levels the mask branch reads."""
        return self.mask_feat_head(feats[self.mask_feat_head.start_level: self.mask_feat_head.end_level + 1])

    def forward_train(self, images, targets: list[dict]) -> dict[str, Tensor]:
        check_targets(targets, images, self.num_classes)
        image_list, targets = self.transform(images, targets, training=True)
        cate_preds, kernel_preds, mask_feats = self.forward_features(image_list.tensors)
        pad_h, pad_w = image_list.tensors.shape[-2:]
        gt_masks = [_pad_masks(t["masks"], (pad_h, pad_w)) for t in targets]
        return self.bbox_head.loss(cate_preds, kernel_preds, mask_feats, gt_masks, [t["labels"] for t in targets])

    @torch.no_grad()
    def inference(self, images) -> list[dict[str, Tensor]]:
        """The same results as ``postprocess(*forward_features(...))``, computed lazily.

        Post-processing only ever reads the kernels of cells whose score passes ``test_cfg.score_thr``, so
        the category branch runs first and the kernel branch runs only for levels with such a cell, the
        mask branch only if there is one at all. An empty frame costs backbone + FPN + category branch.
        """
        image_list = self.transform(images, training=False)[0]
        feats = self.neck(self.backbone(image_list.tensors))
        head = self.bbox_head
        level_inputs = head.level_inputs(feats)
        scores = [cell_scores(head.forward_cate(x)) for x in level_inputs]  # per level (B, S*S, C)
        active = [bool((s > self.test_cfg.score_thr).any()) for s in scores]
        if not any(active):
            device = image_list.tensors.device
            return [empty_result(size, device) for size in image_list.original_sizes]
        mask_feats = self.mask_features(feats)
        kernel_preds = [head.forward_kernel(x) if a else x.new_zeros(x.shape[0], head.solo_kernel.out_channels,
                                                                         *x.shape[-2:])
                        for x, a in zip(level_inputs, active)]  # zeros: never read, no cell there passes
        return self._postprocess_scores(torch.cat(scores, dim=1), kernel_preds, mask_feats, image_list)

    def postprocess(self, cate_preds: list[Tensor], kernel_preds: list[Tensor], mask_feats: Tensor,
                    image_list: ImageList) -> list[dict[str, Tensor]]:
        """Network outputs (as from :meth:`forward_features`) -> one result per image."""
        scores = torch.cat([cell_scores(p) for p in cate_preds], dim=1)  # (B, M, C)
        return self._postprocess_scores(scores, kernel_preds, mask_feats, image_list)

    def _postprocess_scores(self, scores: Tensor, kernel_preds: list[Tensor], mask_feats: Tensor,
                            image_list: ImageList) -> list[dict[str, Tensor]]:
        head = self.bbox_head
        # Under autocast (bf16 / fp16 inference) only the network runs in low precision: the dynamic masks,
        # their thresholds and Matrix NMS are cheap and sensitive, so they run in float32.
        with torch.autocast(mask_feats.device.type, enabled=False):
            kernels = head.flatten_kernels([k.float() for k in kernel_preds])  # (B, M, D)
            mask_feats = mask_feats.float()
            strides = head.cell_strides(mask_feats.device)
            return [postprocess_single(scores[b], kernels[b], mask_feats[b], strides, image_list.image_sizes[b],
                                       image_list.original_sizes[b], self.test_cfg, head.kernel_size)
                    for b in range(len(image_list.image_sizes))]


def _pad_masks(masks: Tensor, size: tuple[int, int]) -> Tensor:
    out = masks.new_zeros((masks.shape[0], *size))
    out[:, : masks.shape[1], : masks.shape[2]] = masks
    return out


def check_targets(targets: list[dict], images, num_classes: int) -> None:
    """One clear error for malformed targets instead of a shape error deep in target assignment."""
    if len(targets) != len(images):
        raise ValueError(f"targets: got {len(targets)} targets for {len(images)} images")
    for i, t in enumerate(targets):
        if "masks" not in t or "labels" not in t:
            raise ValueError(f"targets[{i}]: needs 'masks' (N, H, W) and 'labels' (N,), got keys {sorted(t)}")
        masks, labels = t["masks"], t["labels"]
        if masks.dim() != 3:
            raise ValueError(f"targets[{i}]: masks must be (N, H, W), got shape {tuple(masks.shape)}")
        if tuple(masks.shape[-2:]) != tuple(images[i].shape[-2:]):
            raise ValueError(f"targets[{i}]: masks are {tuple(masks.shape[-2:])} but the image is "
                             f"{tuple(images[i].shape[-2:])}")
        if masks.shape[0] != labels.shape[0]:
            raise ValueError(f"targets[{i}]: {masks.shape[0]} masks but {labels.shape[0]} labels")
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"targets[{i}]: labels must be in [0, {num_classes}), got {labels.tolist()}")

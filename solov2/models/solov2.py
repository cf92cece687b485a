"""The SOLOv2 detector: ResNet + FPN + mask feature branch + dynamic-kernel head."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from solov2.models.mask_feat_head import MaskFeatHead
from solov2.models.solov2_head import SOLOv2Head
from solov2.models.transform import ImageList, ImageTransform, padded_size
from solov2.postprocess import TestConfig, empty_result, postprocess_single


class SOLOv2(nn.Module):
    """SOLOv2 (Wang et al., NeurIPS 2020).

    ``model(images, targets)`` in training mode returns ``{"loss_ins": Tensor, "loss_cate": Tensor}``;
    ``model(images)`` in eval mode returns one dict per image with ``masks`` ``(N, H, W)`` bool at the
    image's own size, ``labels`` ``(N,)`` int64 in ``[0, num_classes)``, ``scores`` ``(N,)`` float32 and ``boxes``
    ``(N, 4)`` float32 x1, y1, x2, y2 in the image's pixels, computed from the masks.

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
        """Padded, normalized ``(B, 3, Hp, Wp)`` -> (category logits ``(B, C, S, S)`` per level, kernels
        ``(B, E*k*k, S, S)`` per level, mask features ``(B, E, Hp/4, Wp/4)``), the padded batch as one input
        (training, as in the official code; :meth:`inference` runs each image at its own padded size)."""
        feats = self.neck(self.backbone(batch))
        cate_preds, kernel_preds = self.bbox_head(feats)
        return cate_preds, kernel_preds, self.mask_features(feats)

    def predict_cells(self, batch: Tensor, image_sizes, score_thr: float | None = None
                      ) -> tuple[Tensor, Tensor | None, Tensor | list[Tensor] | None]:
        """The network's outputs for every cell of every image, flattened: what post-processing reads, and
        what an exported graph returns (:mod:`solov2.deploy.export`).

        Args:
            batch: ``(B, 3, Hp, Wp)`` normalized images, zero-padded at the bottom and right.
            image_sizes: the resized ``(h, w)`` of each image in the batch (ints; int64 tensors when traced for
                export). Each image's levels are cropped to its own padded region (:meth:`image_features`).
            score_thr: compute lazily: the kernel branch runs only for levels with a cell scoring above it
                (the other levels' kernels are zeros, never read by post-processing), the mask branch only if
                there is one at all. An empty frame costs backbone + FPN + category branch.
        Returns:
            ``scores (B, M, C)`` float32 probabilities after points-NMS, ``M = sum S^2`` cells in level-major,
            row-major order; ``kernels (B, M, E*k*k)`` float32; mask features float32, per image
            ``(E, Hi/4, Wi/4)`` with ``(Hi, Wi) = padded_size((h, w))``: a list, or one ``(B, E, Hp/4, Wp/4)``
            tensor where every image fills the batch. With ``score_thr``, ``(scores, None, None)`` if no cell
            passes it.
        """
        feats = self.neck(self.backbone(batch))
        regions = self.image_features(feats, batch, image_sizes)
        level_inputs = self._level_inputs(feats, regions)
        head = self.bbox_head
        scores = head.flatten_scores([head.forward_cate(x) for x in level_inputs])  # (B, M, C)
        if score_thr is None:
            active = [True] * len(level_inputs)
        else:
            active = [bool((s > score_thr).any()) for s in scores.split([x.shape[-2] * x.shape[-1]
                                                                          for x in level_inputs], dim=1)]
            if not any(active):
                return scores, None, None
        kernel_preds = [head.forward_kernel(x) if a else x.new_zeros(x.shape[0], head.solo_kernel.out_channels,
                                                                     *x.shape[-2:])
                        for x, a in zip(level_inputs, active)]
        mask_feats = self._mask_features(feats, regions)
        # Under autocast (bf16 / fp16 inference) only the network runs in low precision: the dynamic masks,
        # their thresholds and Matrix NMS are cheap and sensitive, so they run in float32.
        kernels = head.flatten_kernels([k.float() for k in kernel_preds])
        mask_feats = mask_feats.float() if isinstance(mask_feats, Tensor) else [m.float() for m in mask_feats]
        return scores, kernels, mask_feats

    def image_features(self, feats: list[Tensor], batch: Tensor, image_sizes) -> list[list[Tensor]] | None:
        """Per image, its FPN outputs cropped to the region it would have alone; None where there is nothing
        to crop (no ``image_sizes``, or every image's own padded size is the batch's).

        SOLOv2 resizes each FPN level to its S x S grid, adds CoordConv coordinates spanning the whole input
        and normalizes the mask branch with GroupNorm over the whole map: padding an image further (to the
        largest image of a batch, or to a static export's input size) changes its result. An image alone
        is resized to the test scale and padded to ``padded_size((h, w), size_divisor)`` (the official
        single-image test); cropping every level to that region (P2..P6: ``ceil(Hi / stride)``, the sizes the
        convolutions give that input) makes the head and mask branch see what they would see then.

        The backbone and FPN still run on the whole input, where the padding beyond the region holds image
        zeros rather than their convolutions' zero padding, so features near the region's bottom and right
        border differ (on the demo model, kernels by up to 1.6 and scores by up to 0.2). Hence
        :meth:`inference` runs images at their own padded size and needs no crop, and the export
        (:class:`solov2.deploy.export.SOLOv2ExportWrapper`) zeroes the backbone's and FPN's inputs outside the
        region, which makes the crops exact (to float rounding).
        """
        if image_sizes is None:
            return None
        pads = [padded_size(size, self.transform.size_divisor) for size in image_sizes]
        full = tuple(batch.shape[-2:])
        if not torch.jit.is_tracing() and all((int(h), int(w)) == full for h, w in pads):
            return None
        stride = int(batch.shape[-2]) // int(feats[0].shape[-2])  # of the finest level (4)
        regions = []
        for b, (h, w) in enumerate(pads):
            regions.append([f[b: b + 1, :, : (h + s - 1) // s, : (w + s - 1) // s]
                            for f, s in zip(feats, (stride * 2 ** i for i in range(len(feats))))])
        return regions

    def _level_inputs(self, feats: list[Tensor], regions: list[list[Tensor]] | None) -> list[Tensor]:
        head = self.bbox_head
        if regions is None:
            return head.level_inputs(feats)
        return [torch.cat(level) for level in zip(*(head.level_inputs(r) for r in regions))]  # (B, ., S, S)

    def _mask_features(self, feats: list[Tensor], regions: list[list[Tensor]] | None) -> Tensor | list[Tensor]:
        if regions is None:
            return self.mask_features(feats)
        return [self.mask_features(r)[0] for r in regions]

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
        """The same results as ``postprocess(*forward_features(...))`` on each image alone, computed lazily
        (:meth:`predict_cells` with ``test_cfg.score_thr``).

        An image's result does not depend on the others in the batch: images are run in groups of the same
        padded size (the size each has alone, ``padded_size``), each group as one batch. Further padding would
        change the results (:meth:`image_features`) and costs time on the padded pixels.
        """
        image_list = self.transform(images, training=False)[0]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, size in enumerate(image_list.image_sizes):
            groups.setdefault(padded_size(size, self.transform.size_divisor), []).append(i)
        results: list[dict[str, Tensor] | None] = [None] * len(image_list.image_sizes)
        for (h, w), index in groups.items():
            batch = image_list.tensors if len(groups) == 1 else image_list.tensors[index, :, :h, :w]
            group = ImageList(batch, [image_list.image_sizes[i] for i in index],
                              [image_list.original_sizes[i] for i in index])
            scores, kernels, mask_feats = self.predict_cells(batch, group.image_sizes, self.test_cfg.score_thr)
            if kernels is None:
                out = [empty_result(size, batch.device) for size in group.original_sizes]
            else:
                out = self._postprocess_cells(scores, kernels, mask_feats, group)
            for i, r in zip(index, out):
                results[i] = r
        return results

    def postprocess(self, cate_preds: list[Tensor], kernel_preds: list[Tensor], mask_feats: Tensor | list[Tensor],
                    image_list: ImageList) -> list[dict[str, Tensor]]:
        """Network outputs (as from :meth:`forward_features`) -> one result per image."""
        head = self.bbox_head
        kernels = head.flatten_kernels([k.float() for k in kernel_preds])
        return self._postprocess_cells(head.flatten_scores(cate_preds), kernels, mask_feats, image_list)

    def _postprocess_cells(self, scores: Tensor, kernels: Tensor, mask_feats: Tensor | list[Tensor],
                           image_list: ImageList) -> list[dict[str, Tensor]]:
        head = self.bbox_head
        strides = head.cell_strides(scores.device)
        with torch.autocast(scores.device.type, enabled=False):  # float32 post-processing (predict_cells)
            return [postprocess_single(scores[b], kernels[b], mask_feats[b].float(), strides,
                                       image_list.image_sizes[b], image_list.original_sizes[b], self.test_cfg,
                                       head.kernel_size)
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

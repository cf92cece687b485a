"""Image batching done inside the model: resize (keeping the aspect ratio), normalize, pad to a multiple of 32.

Like torchvision's ``GeneralizedRCNNTransform`` this is what lets ``model(images)`` take images of any
size and return masks at that size. It is a plain object, not an ``nn.Module``, so it adds nothing to
``print(model)`` or to the state_dict.

The public steps, shared by the model, the export (:mod:`solov2.deploy.export`, :mod:`solov2.deploy.runtime`) and the
``Predictor``: :func:`rescale_size` (the resize rule), :meth:`ImageTransform.resize_normalize`,
:func:`padded_size` and :func:`pad_images` (zeros at the bottom and right), and the inverse for masks,
:func:`masks_at_original_size` (crop to the resized image, resize to the original).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from solov2.postprocess import masks_at_original_size

__all__ = ["ImageList", "ImageTransform", "rescale_size", "padded_size", "pad_images", "masks_at_original_size",
           "resize_target", "check_images"]


@dataclass
class ImageList:
    """A padded batch. ``tensors``: ``(B, 3, Hp, Wp)`` float; ``image_sizes``: resized (h, w) per image;
    ``original_sizes``: (H, W) per image as given."""

    tensors: Tensor
    image_sizes: list[tuple[int, int]]
    original_sizes: list[tuple[int, int]]


def rescale_size(h: int, w: int, scale: tuple[int, int]) -> tuple[int, int]:
    """mmcv's ``keep_ratio`` rule: the largest size with long side <= max(scale) and short side <= min(scale)."""
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return int(h * factor + 0.5), int(w * factor + 0.5)


def padded_size(size, divisor: int):
    """``(h, w)`` -> ``(H, W)``, each rounded up to a multiple of ``divisor``: the input an image has when it is
    alone. Plain arithmetic, so it also works on int64 tensors inside a traced (exported) graph."""
    h, w = size
    return (h + divisor - 1) // divisor * divisor, (w + divisor - 1) // divisor * divisor


def pad_images(images: list[Tensor], size: tuple[int, int]) -> Tensor:
    """``(3, h, w)`` images -> ``(B, 3, H, W)`` with each image at the top left and zeros at the bottom and right
    (zero is the mean colour once normalized)."""
    batch = images[0].new_zeros((len(images), 3, int(size[0]), int(size[1])))
    for b, img in zip(batch, images):
        b[:, : img.shape[1], : img.shape[2]].copy_(img)
    return batch


def transform_fields(cfg: dict) -> dict:
    """A transform's settings as a config or JSON holds them (tuples may be lists) -> :class:`ImageTransform`'s
    arguments with their types (``train_scales`` a list of tuples, the other sequences tuples)."""
    fields = {k: (tuple(v) if isinstance(v, list) and k != "train_scales" else v) for k, v in dict(cfg).items()}
    if "train_scales" in fields:
        fields["train_scales"] = [tuple(s) for s in fields["train_scales"]]
    return fields


@dataclass
class ImageTransform:
    """Args:
        train_scales: ``(long, short)`` sizes; training picks one at random per image (multi-scale).
        test_scale: the ``(long, short)`` size at inference.
        mean, std: normalization on the 0..255 scale, in the network's channel order.
        size_divisor: padding multiple.
        bgr: the network takes BGR (detectron2 / AdelaiDet weights): the RGB input is flipped first.
        rng: draws the train scales; None: Python's global ``random``. The trainer sets one and re-seeds it
            before every forward pass, so a resumed run draws the same scales as an uninterrupted one.
    """

    train_scales: list[tuple[int, int]] = field(default_factory=lambda: [(1333, 800)])
    test_scale: tuple[int, int] = (1333, 800)
    mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    size_divisor: int = 32
    bgr: bool = False
    rng: random.Random | None = field(default=None, repr=False, compare=False)

    def __call__(self, images: list[Tensor] | Tensor, targets: list[dict] | None = None, training: bool = False
                 ) -> tuple[ImageList, list[dict] | None]:
        """Images ``(3, H, W)`` uint8 or float on the 0..255 scale, RGB -> padded batch; target masks follow."""
        check_images(images)
        out_images, sizes, new_targets = [], [], [] if targets is not None else None
        for i, img in enumerate(images):
            scale = (self.rng or random).choice(self.train_scales) if training else self.test_scale
            h, w = rescale_size(img.shape[-2], img.shape[-1], scale)
            out_images.append(self.resize_normalize(img, (h, w)))
            sizes.append((h, w))
            if targets is not None:
                new_targets.append(resize_target(targets[i], (h, w)))
        batch = pad_images(out_images, padded_size((max(s[0] for s in sizes), max(s[1] for s in sizes)),
                                                   self.size_divisor))
        originals = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        return ImageList(batch, sizes, originals), new_targets

    def test_size(self, h: int, w: int) -> tuple[int, int]:
        """The size an ``h x w`` image is resized to at inference (:func:`rescale_size` to ``test_scale``)."""
        return rescale_size(h, w, self.test_scale)

    def test_input_size(self) -> tuple[int, int]:
        """The padded network input ``(H, W)`` of a landscape image at the test scale (``test_scale``'s short x
        long side, rounded up to the size divisor): the size speed is tuned and measured at."""
        long_side, short_side = self.test_scale
        return padded_size((short_side, long_side), self.size_divisor)

    def resize_normalize(self, img: Tensor, size: tuple[int, int]) -> Tensor:
        """``(3, H0, W0)`` RGB, uint8 or float on the 0..255 scale -> ``(3, h, w)`` float32: flipped to BGR if
        ``bgr``, resized to ``size`` (bilinear, half-pixel centres, no antialiasing), ``(x - mean) / std``."""
        x = img.float().flip(0) if self.bgr else img.float()
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0]
        mean = torch.tensor(self.mean, device=x.device).view(3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(3, 1, 1)
        return (x - mean) / std


def resize_target(target: dict, size: tuple[int, int]) -> dict:
    """Resize a target's ``masks`` (N, H, W) to ``size`` with nearest neighbour; labels are kept."""
    masks = target["masks"]
    if tuple(masks.shape[-2:]) != size and masks.shape[0] > 0:
        masks = F.interpolate(masks[None].float(), size=size, mode="nearest")[0] > 0.5
    elif masks.shape[0] == 0:
        masks = masks.new_zeros((0, *size), dtype=torch.bool)
    return {**target, "masks": masks.bool()}


def check_images(images) -> None:
    if isinstance(images, Tensor):
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images: expected a list of (3, H, W) tensors or a (B, 3, H, W) tensor, "
                             f"got shape {tuple(images.shape)}")
    elif not isinstance(images, (list, tuple)) or len(images) == 0:
        raise ValueError("images: expected a non-empty list of (3, H, W) tensors")
    for img in images:
        if not isinstance(img, Tensor) or img.dim() != 3 or img.shape[0] != 3:
            shape = tuple(img.shape) if isinstance(img, Tensor) else type(img).__name__
            raise ValueError(f"images: each image must be a (3, H, W) RGB tensor, got {shape}")
        if not (img.dtype == torch.uint8 or img.is_floating_point()):
            raise ValueError(f"images: dtype must be uint8 or floating point (0..255), got {img.dtype}")
        if min(img.shape[-2:]) < 1:
            raise ValueError(f"images: empty image of shape {tuple(img.shape)}")

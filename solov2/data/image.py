"""Reading image files the way people have them: one decoder for training, evaluation and prediction.

The contract (:func:`read_rgb`): an ``(H, W, 3)`` uint8 RGB array of the image *as it is displayed*:

* the EXIF orientation tag of a camera JPEG is applied (``PIL.ImageOps.exif_transpose``), as detectron2,
  OpenCV's ``imread`` and photo viewers do, so annotations drawn on the upright photo match its pixels;
* 16-bit grey PNGs/TIFFs (PIL modes ``I;16*``, or ``I`` holding values 0..65535) are scaled from their 16-bit
  range to 8 bits (65535 -> 255), not clipped (PIL's ``convert("RGB")`` would make them all white);
  48-bit RGB PNGs are read by PIL as 8-bit RGB already; floating point or 32-bit images are refused;
* grey, palette, CMYK and RGBA images are converted to RGB (alpha is dropped).

A missing or undecodable file raises :class:`DataError` (a ``ValueError``) with a one-line message naming it.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

from solov2.errors import DataError, one_line

__all__ = ["read_rgb", "read_image", "IMAGE_EXTS", "folder_images", "images_in_folder"]

_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file as an ``(H, W, 3)`` uint8 RGB array, upright (see the module docstring)."""
    path = os.fspath(path)
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)  # a copy rotated/flipped as the EXIF tag says (or im itself)
            return _to_rgb(im, path)
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except DataError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: cannot read image ({one_line(exc)})") from None


def read_image(path: str | os.PathLike) -> Tensor:
    """:func:`read_rgb` as a ``(3, H, W)`` uint8 tensor (the data sets' layout)."""
    return torch.from_numpy(read_rgb(path)).permute(2, 0, 1).contiguous()


def _to_rgb(im: Image.Image, path: str) -> np.ndarray:
    if im.mode in _SIXTEEN_BIT_MODES or im.mode == "I":
        values = np.asarray(im)
        if im.mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
            raise DataError(f"{path}: 32-bit integer image (values {values.min()}..{values.max()}) is not "
                            f"supported; save it as 8 or 16 bits per channel")
        # Scale by the bit depth, not by the image's maximum: a dark 16-bit image stays dark.
        grey = ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if im.mode == "F":
        raise DataError(f"{path}: floating point image (PIL mode F) is not supported; save it as 8 or 16 bits")
    return np.array(im.convert("RGB"))  # np.array, not asarray: torch needs a writable buffer


IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def folder_images(folder: str) -> list[str]:
    """The image files under ``folder`` (:data:`IMAGE_EXTS`), recursively and sorted: the images ``predict``
    finds in a folder (videos left out), ``benchmark --images`` times and ``quantize --images`` calibrates on."""
    return sorted(str(p) for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def images_in_folder(folder: str, flag: str = "--images") -> list[str]:
    """:func:`folder_images` of a folder given on the command line (``flag``), or a one-line :class:`DataError`: it
    is no folder, or holds no images."""
    if not os.path.isdir(folder):
        what = "it is a file" if os.path.exists(folder) else "not found"
        raise DataError(f"{folder}: {flag} must be a folder of images; {what}")
    files = folder_images(folder)
    if not files:
        raise DataError(f"{folder}: no images ({', '.join(sorted(IMAGE_EXTS))}) in this folder")
    return files

"""Drawing instance masks on images (cv2), for the demo and for checking data."""
from __future__ import annotations

import colorsys
import os
from typing import Sequence

import cv2
import numpy as np
from PIL import Image

__all__ = ["draw_instances", "instance_color", "save_image"]


def instance_color(index: int) -> tuple[int, int, int]:
    """RGB colour of instance ``index``: hues a golden-ratio step apart, so neighbours differ clearly."""
    hue = (index * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_instances(image: np.ndarray, masks, labels, scores, class_names: Sequence[str], score_thr: float = 0.0,
                   alpha: float = 0.5, min_side: int = 0, boxes=None) -> np.ndarray:
    """Overlay instances on an image.

    Args:
        image: ``(H, W, 3)`` uint8 RGB; not modified.
        masks: ``(N, H, W)`` bool tensor or array.
        labels: ``(N,)`` class indices into ``class_names``.
        scores: ``(N,)`` scores, or ``None`` for ground truth (no score in the caption).
        class_names: names by label.
        score_thr: instances scoring below this are not drawn.
        alpha: opacity of the mask colour.
        min_side: an image whose shorter side is below this is first enlarged by an integer factor (nearest
            neighbour), so that the captions stay legible on small images; 0 never enlarges.
        boxes: ``(N, 4)`` x1, y1, x2, y2 in the image's pixels (pixel edges, as ``result["boxes"]``) to draw as
            rectangles in each instance's colour; None (default) draws none.

    Returns:
        ``(H, W, 3)`` uint8 RGB with translucent masks, their contours and a "class score" caption each.
        Instance ``i`` always gets :func:`instance_color` ``(i)``. Enlarged as ``min_side`` says.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"draw_instances: image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    masks = _numpy(masks).astype(bool)
    labels = _numpy(labels).astype(np.int64)
    scores = None if scores is None else _numpy(scores).astype(np.float64)
    if masks.shape[1:] != image.shape[:2]:
        raise ValueError(f"draw_instances: masks are {masks.shape[1:]} but the image is {image.shape[:2]}")
    if boxes is not None:
        boxes = _numpy(boxes).astype(np.float64).reshape(-1, 4)
        if len(boxes) != len(masks):
            raise ValueError(f"draw_instances: {len(boxes)} boxes for {len(masks)} masks")
    factor = max(1, -(-min_side // min(image.shape[:2])))
    if factor > 1:
        image = image.repeat(factor, 0).repeat(factor, 1)
        masks = masks.repeat(factor, 1).repeat(factor, 2)
    out = np.ascontiguousarray(image, dtype=np.float32)  # cv2 draws only on C-contiguous arrays
    keep = [i for i in range(len(masks)) if scores is None or scores[i] >= score_thr]
    for i in keep:
        color = np.array(instance_color(i), dtype=np.float32)
        out[masks[i]] = (1 - alpha) * out[masks[i]] + alpha * color
    out = out.round().astype(np.uint8)
    for i in keep:  # contours and captions after all fills, so that no fill covers them
        contours, _ = cv2.findContours(masks[i].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, instance_color(i), 1, cv2.LINE_AA)
        if boxes is not None and boxes[i, 2] > boxes[i, 0]:
            # Edges -> the last pixel inside: cv2 draws the rectangle on the pixels it is given.
            x1, y1, x2, y2 = (boxes[i] * factor).round().astype(int)
            cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), instance_color(i), 1)
    for i in keep:
        name = class_names[labels[i]] if 0 <= labels[i] < len(class_names) else str(labels[i])
        text = name if scores is None else f"{name} {scores[i]:.2f}"
        _caption(out, text, masks[i], instance_color(i))
    return out


def _caption(image: np.ndarray, text: str, mask: np.ndarray, color: tuple[int, int, int]) -> None:
    """Write ``text`` on a filled box at the top-left of the mask's bounding box, kept inside the image."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return
    font, scale, thickness = cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1
    (tw, th), base = cv2.getTextSize(text, font, scale, thickness)
    h, w = image.shape[:2]
    x = int(min(max(xs.min(), 0), max(w - tw - 2, 0)))
    y = int(min(max(ys.min(), th + base + 2), h - 1))  # baseline; stays inside the image at the top
    cv2.rectangle(image, (x, y - th - base - 2), (x + tw + 2, y), color, -1)
    luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    ink = (0, 0, 0) if luminance > 128 else (255, 255, 255)  # readable on light and dark boxes
    cv2.putText(image, text, (x + 1, y - base - 1), font, scale, ink, thickness, cv2.LINE_AA)


def save_image(path: str, rgb_array: np.ndarray) -> None:
    """Write an ``(H, W, 3)`` uint8 RGB array to ``path`` (format from the extension); creates the folder."""
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(rgb_array)).save(path)


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)

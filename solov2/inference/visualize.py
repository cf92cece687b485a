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
    keep = [i for i in range(len(masks)) if scores is None or scores[i] >= score_thr]
    # Fill at the image's own size, then enlarge: the same pixels as filling the enlarged image, at 1/factor^2
    # of the work. Each instance's fill, contour and caption then touch only its bounding box.
    out = image.astype(np.float32)
    spans = {i: _span(masks[i]) for i in keep}
    for i in keep:
        if spans[i] is None:
            continue
        (y0, y1), (x0, x1) = spans[i]
        region, inside = out[y0:y1, x0:x1], masks[i, y0:y1, x0:x1]
        region[inside] = (1 - alpha) * region[inside] + alpha * np.array(instance_color(i), dtype=np.float32)
    factor = max(1, -(-min_side // min(image.shape[:2])))
    out = np.ascontiguousarray(out.round().astype(np.uint8).repeat(factor, 0).repeat(factor, 1))
    for i in keep:  # contours and captions after all fills, so that no fill covers them
        if spans[i] is not None:
            # the bounding box one pixel wider where the image allows, so that contours close as on the whole image
            (y0, y1), (x0, x1) = ((max(a - 1, 0), min(b + 1, n)) for (a, b), n in zip(spans[i], masks.shape[1:]))
            crop = masks[i, y0:y1, x0:x1].repeat(factor, 0).repeat(factor, 1).astype(np.uint8)
            contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE,
                                           offset=(x0 * factor, y0 * factor))
            cv2.drawContours(out, contours, -1, instance_color(i), 1, cv2.LINE_AA)
        if boxes is not None and boxes[i, 2] > boxes[i, 0]:
            # Edges -> the last pixel inside: cv2 draws the rectangle on the pixels it is given.
            bx1, by1, bx2, by2 = (boxes[i] * factor).round().astype(int)
            cv2.rectangle(out, (bx1, by1), (bx2 - 1, by2 - 1), instance_color(i), 1)
    for i in keep:
        if spans[i] is None:
            continue
        name = class_names[labels[i]] if 0 <= labels[i] < len(class_names) else str(labels[i])
        text = name if scores is None else f"{name} {scores[i]:.2f}"
        (y0, _), (x0, _) = spans[i]
        _caption(out, text, (x0 * factor, y0 * factor), instance_color(i))
    return out


def _span(mask: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """The rows and columns ``((y0, y1), (x0, x1))``, ends exclusive, that hold a mask's pixels; None if empty."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if len(rows) == 0:
        return None
    return (int(rows[0]), int(rows[-1]) + 1), (int(cols[0]), int(cols[-1]) + 1)


def _caption(image: np.ndarray, text: str, top_left: tuple[int, int], color: tuple[int, int, int]) -> None:
    """Write ``text`` on a filled box at ``top_left`` (x, y: the mask's bounding box), kept inside the image."""
    font, scale, thickness = cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1
    (tw, th), base = cv2.getTextSize(text, font, scale, thickness)
    h, w = image.shape[:2]
    x = int(min(max(top_left[0], 0), max(w - tw - 2, 0)))
    y = int(min(max(top_left[1], th + base + 2), h - 1))  # baseline; stays inside the image at the top
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

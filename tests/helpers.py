"""Small builders shared by the tests (random weights, tiny inputs, nothing downloaded)."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from solov2 import build_model, load_config

ROOT = Path(__file__).resolve().parents[1]
SEED_CONFIG = ROOT / "configs/solov2/cityscapes/solov2_light_448_r50_fpn_2gpu_3x.py"
DEMO_CONFIG = ROOT / "configs/demo/solov2_light_r18_shapes.py"
TINY_SHAPES = ROOT / "tests/data/tiny_shapes.py"
# The training (and val and test) set of conftest.py's ``trained_tiny`` checkpoint.
TRAINED_DATA = {"image_size": 128, "num_images": 8, "seed": 0, "type": "SyntheticShapes"}
# ... and its network: the demo's fp32 CPU width (conftest.py's trained_tiny).
TRAINED_WIDTH = {"model.backbone.base_channels": 32, "model.neck.in_channels": [32, 64, 128, 256]}


def wait_for_checkpoint(proc: subprocess.Popen, path: Path, min_iter: int, timeout: float) -> None:
    """Wait until the training ``proc`` has written ``path`` at iteration >= ``min_iter`` (or has ended, or
    ``timeout`` seconds passed); the caller then kills it and checks what it finds."""
    from solov2.checkpoint.io import read_checkpoint
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if path.exists() and read_checkpoint(str(path))["meta"]["iter"] >= min_iter:
            return
        time.sleep(0.5)


TINY_HEAD = {"num_grids": [24, 20, 16, 12, 8], "seg_feat_channels": 128, "sigma": 0.2}


def tiny_model(num_classes: int = 3, **overrides):
    """The demo's narrow ResNet-18 SOLOv2 with small test scales: fast enough for unit tests. Its head is fixed
    here (grids 24..8, 128 channels, sigma 0.2: the demo's until its recipe changed), so that the tests' planted
    cells and pinned losses do not move with the demo's recipe."""
    opts = {"model.bbox_head.num_classes": num_classes,
            **{f"model.bbox_head.{k}": v for k, v in TINY_HEAD.items()},
            "model.transform.train_scales": [(128, 128)], "model.transform.test_scale": (128, 128)}
    opts.update(overrides)
    return build_model(load_config(DEMO_CONFIG, opts))


def rect_masks(size: tuple[int, int], boxes: list[tuple[int, int, int, int]]) -> torch.Tensor:
    """``(N, H, W)`` bool masks of axis-aligned rectangles ``(x1, y1, x2, y2)``, x2/y2 exclusive."""
    masks = torch.zeros((len(boxes), *size), dtype=torch.bool)
    for m, (x1, y1, x2, y2) in zip(masks, boxes):
        m[y1:y2, x1:x2] = True
    return masks


def image_with(masks: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A ``(3, H, W)`` uint8 image: dim noise, each mask filled with its own bright colour."""
    g = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 40, (3, *masks.shape[-2:]), generator=g, dtype=torch.uint8)
    for i, m in enumerate(masks):
        colour = torch.tensor([200, 60 + 60 * (i % 3), 255 - 70 * (i % 4)], dtype=torch.uint8)
        image[:, m] = colour[:, None]
    return image


# (grid S, row, col, class, logit): cells planted as confident detections, spread over all five levels.
PLANTED = [(40, 5, 8, 0, 3.0), (40, 22, 30, 2, 2.5), (36, 18, 10, 0, 2.0), (24, 12, 12, 5, 1.5),
           (24, 3, 20, 1, 2.2), (16, 8, 4, 0, 1.0), (12, 6, 6, 7, 2.8)]


def plant_detections(model, planted=None):
    """Every cell scores sigmoid(-10) except PLANTED, which score sigmoid(logit): real, well separated detections.

    A forward hook adds a fixed per-cell offset to ``solo_cate``'s output, so the exported graph (traced
    through the hook) and the PyTorch model see the same logits. The kernels stay the randomly initialised,
    position-dependent ones (CoordConv), so each planted cell gets its own mask. Returns the hook's handle.
    """
    head = model.bbox_head
    torch.nn.init.zeros_(head.solo_cate.weight)
    torch.nn.init.constant_(head.solo_cate.bias, -10.0)
    offsets = {s: torch.zeros(1, head.num_classes, s, s) for s in head.num_grids}
    for s, row, col, cls, logit in PLANTED if planted is None else planted:
        offsets[s][0, cls, row, col] = 10.0 + logit
    return head.solo_cate.register_forward_hook(lambda module, args, out: out + offsets[int(out.shape[-1])].to(out))


CITYSCAPES_CLASSES = ["person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"]
# The seed network with a ResNet-18 at a 384x224 test scale: the exported-backend tests' model.
R18_SEED_OPTIONS = {"model.backbone.depth": 18, "model.neck.in_channels": [64, 128, 256, 512],
                    "model.transform.test_scale": (384, 224)}


def smooth_image(seed: int = 0, size: tuple[int, int] = (300, 520)) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 RGB image of smooth random colours (bilinear upsampling of a 1/32 grid)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, size[0] // 32, size[1] // 32, generator=g)
    image = F.interpolate(low, size=size, mode="bilinear", align_corners=False)[0] * 255
    return image.to(torch.uint8).permute(1, 2, 0).numpy()


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return 1.0 if union == 0 else (a & b).sum() / union


def assert_same_instances(got: dict, ref: dict, score_atol: float, min_iou: float) -> None:
    """Same labels in the same order, scores within ``score_atol``, each mask IoU >= ``min_iou``."""
    assert len(ref["scores"]) >= 3, "the planted detections did not survive post-processing"
    np.testing.assert_array_equal(got["labels"], ref["labels"])
    np.testing.assert_allclose(got["scores"], ref["scores"], atol=score_atol, rtol=0)
    assert got["masks"].shape == ref["masks"].shape
    for g, r in zip(got["masks"], ref["masks"]):
        assert mask_iou(g, r) >= min_iou


def torch_results(model, images: list[np.ndarray], score_thr: float = 0.05) -> list[dict]:
    """The PyTorch model's results on RGB arrays, as NumPy, above ``score_thr`` (as a Predictor returns them)."""
    with torch.no_grad():
        results = model([torch.from_numpy(im).permute(2, 0, 1) for im in images])
    out = []
    for r in results:
        keep = r["scores"] >= score_thr
        out.append({"masks": r["masks"][keep].numpy(), "labels": r["labels"][keep].numpy(),
                    "scores": r["scores"][keep].numpy()})
    return out


def shapes_image(index: int = 0, size: int = TRAINED_DATA["image_size"]) -> tuple[np.ndarray, dict]:
    """Image ``index`` of ``TRAINED_DATA`` drawn at ``size`` px (at the default size, a training image of the
    ``trained_tiny`` checkpoint): ``(H, W, 3)`` uint8 and its ground truth."""
    from solov2.data import SyntheticShapes
    image, target = SyntheticShapes(num_images=TRAINED_DATA["num_images"], seed=TRAINED_DATA["seed"],
                                    image_size=size)[index]
    return image.permute(1, 2, 0).numpy(), target


def png(image: np.ndarray) -> bytes:
    """``image`` (``(H, W, 3)`` uint8) as the bytes of a PNG file."""
    import io

    from PIL import Image
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def post_image(url: str, image: bytes, name: str = "a.png", **fields) -> dict:
    """POST /predict to a running `solov2 serve` with the standard library (multipart by hand); the JSON answer."""
    import json
    import urllib.request
    boundary = "solov2boundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
                 f"Content-Type: image/png\r\n\r\n".encode() + image + f"\r\n--{boundary}--\r\n".encode())
    request = urllib.request.Request(f"{url}/predict", data=b"".join(parts), method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())

"""Inference over a data set (split across processes) and its metrics."""
from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence

import numpy as np
import pycocotools.mask as mask_util
import torch
from tqdm import tqdm

from solov2 import distributed as du


def encode_result(result: dict[str, torch.Tensor]) -> dict:
    """Masks to COCO RLE so thousands of full-size results fit in memory and cross process boundaries."""
    masks = result["masks"].cpu().numpy()
    rles = mask_util.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8))) if len(masks) else []
    return {"rles": rles, "size": tuple(masks.shape[-2:]), "labels": result["labels"].cpu(),
            "scores": result["scores"].cpu()}


def decode_result(encoded: dict) -> dict[str, torch.Tensor]:
    h, w = encoded["size"]
    if len(encoded["rles"]):
        with warnings.catch_warnings():  # pycocotools' decode trips a numpy 2 DeprecationWarning; harmless
            warnings.filterwarnings("ignore", message="__array__ implementation", category=DeprecationWarning)
            masks = torch.from_numpy(mask_util.decode(encoded["rles"])).permute(2, 0, 1).bool()
    else:
        masks = torch.zeros((0, h, w), dtype=torch.bool)
    return {"masks": masks, "labels": encoded["labels"], "scores": encoded["scores"]}


class DecodedResults(Sequence):
    """A list of per-image results that decodes each image's masks only when it is read."""

    def __init__(self, encoded: list[dict]):
        self.encoded = encoded

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, i):
        return decode_result(self.encoded[i])


@torch.no_grad()
def inference_on_dataset(model, dataset, device: str = "cpu", desc: str = "eval") -> list[dict]:
    """Run ``model`` (eval mode) on every image; each process takes every world_size-th image.

    Returns, on every process, the encoded results of all images in dataset order. Each image's masks are
    RLE-encoded as soon as they are predicted (:func:`encode_result`), so memory grows with the instances'
    RLEs, not with full-size masks times the number of images.
    """
    was_training = model.training
    model.eval()
    rank, world = du.get_rank(), du.get_world_size()
    indices = list(range(rank, len(dataset), world))
    local = {}
    for i in tqdm(indices, desc=desc, disable=rank != 0, dynamic_ncols=True):
        image, _ = dataset[i]
        local[i] = encode_result(model([image.to(device)])[0])
    merged = {}
    for part in du.all_gather_object(local):
        merged.update(part)
    model.train(was_training)
    return [merged[i] for i in range(len(dataset))]


def evaluate(dataset, encoded: list[dict], metric: str, out_dir: str, log=print) -> dict:
    """``metric``: ``"segm"`` (COCO mask AP and box AP, the boxes of the masks) or ``"cityscapes"`` (official
    instance-level AP)."""
    if metric == "segm":
        from solov2.evaluation.coco import evaluate_coco, rles_to_coco
        coco_results = []
        img_ids = [int(i) for i in dataset.img_ids]
        for image_id, enc in zip(img_ids, encoded):
            coco_results += rles_to_coco(enc["rles"], enc["labels"], enc["scores"], image_id, dataset.cat_ids)
        os.makedirs(out_dir, exist_ok=True)
        original_id = getattr(dataset, "original_image_id", lambda i: i)  # the file's own (e.g. str) ids
        with open(os.path.join(out_dir, "segm_results.json"), "w") as f:
            json.dump([{**r, "image_id": original_id(r["image_id"])} for r in coco_results], f)
        # the data set's ground truth as a plain dict, built for this evaluation and dropped after it
        ground_truth = dataset.ground_truth() if hasattr(dataset, "ground_truth") else dataset.coco
        return evaluate_coco(ground_truth, coco_results, log=log, img_ids=img_ids)
    if metric == "cityscapes":
        from solov2.evaluation.cityscapes import evaluate_cityscapes
        return evaluate_cityscapes(dataset, DecodedResults(encoded), os.path.join(out_dir, "cityscapes_results"),
                                   log=log)
    raise ValueError(f"unknown metric {metric!r}; expected 'segm' or 'cityscapes'")

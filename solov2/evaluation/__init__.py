"""Evaluation: COCO mask AP (``solov2.evaluation.coco``); Cityscapes lives in ``solov2.evaluation.cityscapes``."""
from .coco import evaluate_coco, results_to_coco

__all__ = ["evaluate_coco", "results_to_coco"]

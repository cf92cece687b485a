"""Evaluation: running a model over a data set (``evaluator``), COCO mask AP (``coco``) and the official Cityscapes
metrics (``cityscapes``)."""

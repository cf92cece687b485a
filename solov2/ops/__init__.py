from .dynamic_masks import dynamic_masks
from .matrix_nms import matrix_nms

__all__ = ["dynamic_masks", "matrix_nms"]

from solov2.ops.dynamic_masks import dynamic_masks
from solov2.ops.matrix_nms import matrix_nms

__all__ = ["dynamic_masks", "matrix_nms"]

# SOLOv2 (full) R50-FPN, multi-scale training, test at 800 (COCO, 80 classes), 36 epochs, 8 GPUs x 2 images.
_base_ = [
    '../../_base_/models/solov2_r50_fpn.py',
    '../../_base_/datasets/coco_instance.py',
    '../../_base_/schedules/schedule_3x.py',
    '../../_base_/default_runtime.py',
]

# SOLOv2 light R50-FPN, test at 448 (COCO, 80 classes), 36 epochs, 8 GPUs x 2 images.
_base_ = [
    '../../_base_/models/solov2_light_r50_fpn.py',
    '../../_base_/datasets/coco_instance.py',
    '../../_base_/schedules/schedule_3x.py',
    '../../_base_/default_runtime.py',
]

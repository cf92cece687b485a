# The seed's network: SOLOv2 light R50-FPN at 448, 8 Cityscapes thing classes, 2 GPUs x 2 images, 36 epochs.
#   python tools/train.py ./configs/solov2/cityscapes/solov2_light_448_r50_fpn_2gpu_3x.py --gpus 2
_base_ = [
    '../../_base_/models/solov2_light_r50_fpn.py',
    '../../_base_/datasets/cityscapes_instance.py',
    '../../_base_/schedules/schedule_3x.py',
    '../../_base_/default_runtime.py',
]
model = dict(bbox_head=dict(num_classes=8))
# optimizer.lr 0.01 is for 16 images per step; --gpus 2 x 2 images trains at 0.0025 (auto_scale_lr).
evaluation = dict(interval=0, metric='cityscapes')

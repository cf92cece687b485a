# SOLOv2 (full) X101-DCN-FPN (official solov2_x101_dcn_fpn_8gpu_3x.py): ResNeXt-101 64x4d with DCNv2 where
# the R101-DCN model has it. The official ImageNet weights are open-mmlab://resnext101_64x4d; torchvision's
# resnext101_64x4d has the same shapes and names (another training run).
_base_ = './solov2_r101_dcn_fpn_3x.py'
model = dict(
    pretrained='torchvision://resnext101_64x4d',
    backbone=dict(type='ResNeXt', groups=64, base_width=4))

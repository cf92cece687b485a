_base_ = './solov2_r50_fpn_3x.py'
model = dict(pretrained='torchvision://resnet101', backbone=dict(depth=101))

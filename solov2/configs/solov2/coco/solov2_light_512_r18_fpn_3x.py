_base_ = './solov2_light_512_r50_fpn_3x.py'
model = dict(pretrained='torchvision://resnet18',
            backbone=dict(depth=18), neck=dict(in_channels=[64, 128, 256, 512]))

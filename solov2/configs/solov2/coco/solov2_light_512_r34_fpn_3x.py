_base_ = './solov2_light_512_r50_fpn_3x.py'
model = dict(pretrained='torchvision://resnet34',
            backbone=dict(depth=34), neck=dict(in_channels=[64, 128, 256, 512]))

_base_ = './solov2_r50_fpn_3x.py'
model = dict(backbone=dict(depth=101))

# SOLOv2 light R50-FPN, test at 512.
_base_ = './solov2_light_448_r50_fpn_3x.py'
model = dict(
    bbox_head=dict(scale_ranges=((1, 64), (32, 128), (64, 256), (128, 512), (256, 2048))),
    transform=dict(train_scales=[(852, 512), (852, 480), (852, 448), (852, 416), (852, 384), (852, 352)],
                   test_scale=(852, 512)))

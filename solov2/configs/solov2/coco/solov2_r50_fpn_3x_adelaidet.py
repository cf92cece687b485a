# SOLOv2 (full) R50-FPN as AdelaiDet builds it (configs/SOLOv2/R50_3x.yaml), for its released weights after
# `solov2 convert --from adelaidet`: detectron2's MSRA ResNet-50 (stride on the 1x1 conv of a bottleneck),
# BGR input with std 1 (detectron2's defaults for MSRA weights), test at 800/1333. Heads as the full SOLOv2.
_base_ = './solov2_r50_fpn_3x.py'

model = dict(
    # torchvision's ImageNet weights are pytorch-style; AdelaiDet trains from detectron2's MSRA R-50
    # (caffe style), which is not supported: this config is for its released SOLOv2 weights.
    pretrained=None,
    backbone=dict(style='caffe'),
    transform=dict(
        train_scales=[(1333, 800), (1333, 768), (1333, 736), (1333, 704), (1333, 672), (1333, 640)],
        test_scale=(1333, 800),
        mean=(103.53, 116.28, 123.675),
        std=(1.0, 1.0, 1.0),
        bgr=True),
)

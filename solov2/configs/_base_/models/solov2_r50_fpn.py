# SOLOv2 (full): ResNet-50, FPN, 4 stacked convs of 512 channels per branch, 256-dim dynamic kernels.
model = dict(
    type='SOLOv2',
    pretrained='torchvision://resnet50',  # ImageNet weights (torch hub cache; None trains from scratch)
    backbone=dict(type='ResNet', depth=50, frozen_stages=1, norm_eval=True, zero_init_residual=False,
                  stage_with_dcn=(False, False, False, False)),  # with dcn=dict(...): solov2_*_dcn_*.py
    neck=dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256, num_outs=5),
    mask_feat_head=dict(type='MaskFeatHead', in_channels=256, out_channels=128, start_level=0, end_level=3,
                        num_classes=256),
    bbox_head=dict(
        type='SOLOv2Head',
        num_classes=80,
        in_channels=256,
        stacked_convs=4,
        seg_feat_channels=512,
        strides=[8, 8, 16, 32, 32],
        scale_ranges=((1, 96), (48, 192), (96, 384), (192, 768), (384, 2048)),
        sigma=0.2,
        num_grids=[40, 36, 24, 16, 12],
        ins_out_channels=256,
        kernel_size=1,
        loss_cate=dict(type='FocalLoss', use_sigmoid=True, alpha=0.25, gamma=2.0, loss_weight=1.0),
        loss_ins=dict(type='DiceLoss', use_sigmoid=True, loss_weight=3.0),
        use_dcn_in_tower=False,  # True: deformable tower convs of type_dcn ('DCN' or 'DCNv2')
        type_dcn=None,
        shared_cells='all_pairs'),  # official: a cell shared by two instances trains both masks
    transform=dict(
        train_scales=[(1333, 800), (1333, 768), (1333, 736), (1333, 704), (1333, 672), (1333, 640)],
        test_scale=(1333, 800),
        mean=(123.675, 116.28, 103.53),
        std=(58.395, 57.12, 57.375),
        size_divisor=32),
    test_cfg=dict(nms_pre=500, score_thr=0.1, mask_thr=0.5, update_thr=0.05, kernel='gaussian', sigma=2.0,
                  max_per_img=100),
)

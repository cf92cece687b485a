# SOLOv2 (full) R101-DCN-FPN (official solov2_r101_dcn_fpn_8gpu_3x.py): modulated deformable convs (DCNv2)
# in the 3x3 conv of every bottleneck of layer2..layer4, in every conv of both head towers and in every conv
# of the mask feature branch (its 1x1 conv_pred included).
_base_ = './solov2_r101_fpn_3x.py'
model = dict(
    backbone=dict(dcn=dict(type='DCNv2', deformable_groups=1, fallback_on_stride=False),
                  stage_with_dcn=(False, True, True, True)),
    mask_feat_head=dict(conv_cfg=dict(type='DCNv2')),
    bbox_head=dict(use_dcn_in_tower=True, type_dcn='DCNv2'))

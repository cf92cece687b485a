# SOLOv2 light R50-DCN-FPN, test at 512 (official solov2_light_512_dcn_r50_fpn_8gpu_3x.py): deformable convs
# v1 (type 'DCN', no modulation) in the 3x3 conv of every bottleneck of layer2..layer4, and the light head
# (SOLOv2LightHead) with 3 convs per tower, the last one deformable. The mask feature branch stays plain.
_base_ = './solov2_light_512_r50_fpn_3x.py'
model = dict(
    backbone=dict(dcn=dict(type='DCN', deformable_groups=1, fallback_on_stride=False),
                  stage_with_dcn=(False, True, True, True)),
    bbox_head=dict(type='SOLOv2LightHead', stacked_convs=3, use_dcn_in_tower=True, type_dcn='DCN'))

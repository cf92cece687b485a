# SOLOv2 (full) R50-FPN, 12 epochs, single-scale training at 800 (official solov2_r50_fpn_8gpu_1x.py).
_base_ = './solov2_r50_fpn_3x.py'
model = dict(transform=dict(train_scales=[(1333, 800)]))
lr_config = dict(step=[9, 11])
total_epochs = 12

# A very small training setup for tests: the demo network on 96x96 synthetic shapes, generated in memory.
_base_ = ['../../configs/demo/solov2_light_r18_shapes.py']
model = dict(transform=dict(train_scales=[(96, 96)], test_scale=(96, 96)))
data = dict(
    imgs_per_gpu=2,
    workers_per_gpu=0,
    train=dict(_delete_=True, type='SyntheticShapes', num_images=16, seed=0, image_size=96),
    val=dict(_delete_=True, type='SyntheticShapes', num_images=4, seed=1, image_size=96),
    test=dict(_delete_=True, type='SyntheticShapes', num_images=4, seed=1, image_size=96),
)
optimizer = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001)
lr_config = dict(policy='step', warmup='linear', warmup_iters=4, warmup_ratio=0.1, step=[3])
total_epochs = 4
checkpoint_config = dict(interval=1, latest_iters=2, max_keep_ckpts=2)
log_config = dict(interval=2)
evaluation = dict(interval=0, metric='segm')
auto_scale_lr = dict(enable=False)  # lr chosen for these tests' batch of 2

# 36 epochs, lr x0.1 after epochs 27 and 33; lr 0.01 is for 16 images per step (linear scaling rule).
optimizer = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001)
grad_clip = dict(max_norm=35, norm_type=2)
lr_config = dict(policy='step', warmup='linear', warmup_iters=500, warmup_ratio=0.01, step=[27, 33])
total_epochs = 36

# The README's demo: a small SOLOv2 light (ResNet-18, narrow FPN and head) trained from scratch on CPU
# on the built-in synthetic shapes (written as COCO folders by `solov2 demo` / `solov2 make-shapes`).
_base_ = ['../_base_/models/solov2_light_r50_fpn.py', '../_base_/default_runtime.py']

model = dict(
    pretrained=None,  # offline, from scratch: no ImageNet weights, every layer and BN trained
    # base_channels: `solov2 demo` trains at 32 (half width) where training runs in fp32 on a CPU
    # (solov2/apps/demo.py, FP32_CPU_RECIPE); 64 where it runs in bf16 and on GPUs.
    backbone=dict(depth=18, frozen_stages=-1, norm_eval=False, base_channels=64),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=64),
    mask_feat_head=dict(in_channels=64, out_channels=64, num_classes=64),
    # A cheap head for a CPU: its towers run over every grid cell, so grids of 12..4 cells (11 pixels a cell at
    # 128 px; the seed's 40 cells at 768 px are 19) and 64 channels make a step 0.65x as long as grids 24..8 with
    # 128 channels, at about the same mask AP per step (0.27-0.29 against 0.30 at 1000 steps); sigma 0.4 gives
    # each small shape more positive cells.
    # Sweeps of benchmarks/train_sweep.py; docs/history.md.
    bbox_head=dict(num_classes=5, in_channels=64, seg_feat_channels=64, ins_out_channels=64,
                   num_grids=[12, 10, 8, 6, 4], sigma=0.4,
                   scale_ranges=((1, 32), (16, 64), (32, 128), (64, 256), (128, 512))),
    # One train scale: with 112/128/144 at random a trainer step took 0.32 s instead of 0.26 s on a 2-core CPU
    # (`solov2 train` with max_iters=100, with and without "model.transform.train_scales=[(128, 128)]"), and the
    # demo's ten minutes are better spent on steps (docs/training.md). Tested at 160 px, where small shapes
    # cover more of the stride-4 mask features: the same checkpoint scored mask AP 0.439 at 128 and 0.483 at 160
    # (0.423 and 0.468 on 300 held-out images; 144, padded to 160 by size_divisor, 0.377).
    transform=dict(train_scales=[(128, 128)], test_scale=(160, 160)),
)
data = dict(
    imgs_per_gpu=8,
    # In the training process: a batch loads in ~7 ms, and a loader process competing with the two compute threads
    # made steps slower (100-step runs alternated: 23-24 s with 0 workers, 25-28 s with 1).
    workers_per_gpu=0,
    # The small-data recipe, for a training set of at most 200 images (a user's own data; the demo's 1000 train
    # without it, as before): Simple Copy-Paste on every image, large-scale jitter, and a larger scale (train at
    # least 160, test at least 192: the demo's test/train ratio), which a small set pays for easily (1.5x the time
    # per step; a larger scale set in model.transform is kept).
    # 60 images, 60 epochs, 3 seeds (docs/small_data.md): mask AP 0.043 without augmentation -> 0.122 on these
    # shapes; on a set generated for the final check, the config before (whole-epoch decay, no augmentation)
    # 0.044 -> 0.154.
    train=dict(type='CocoDataset', ann_file='runs/demo/data/train/annotations.json',
               img_prefix='runs/demo/data/train/images', flip_prob=0.5,
               augment=dict(copy_paste=1.0, lsj=dict(scale=(0.5, 2.0)), max_images=200,
                            min_train_scale=(160, 160), min_test_scale=(192, 192))),
    val=dict(type='CocoDataset', ann_file='runs/demo/data/val/annotations.json',
             img_prefix='runs/demo/data/val/images', filter_empty_gt=False),
    test=dict(type='CocoDataset', ann_file='runs/demo/data/val/annotations.json',
              img_prefix='runs/demo/data/val/images', filter_empty_gt=False),
)
# From scratch on a CPU, AdamW converges in far fewer iterations than the paper's SGD schedule.
optimizer = dict(type='AdamW', lr=0.002, weight_decay=0.0001)
auto_scale_lr = dict(enable=True, base_batch_size=8)  # lr 0.002 is for 8 images; batch 2 trains at 0.0005
grad_clip = dict(max_norm=35, norm_type=2)
# 14 epochs of 125 steps with bf16 autocast on a 2-core CPU with native bf16 (the default there): from a fresh
# clone, `make demo` gave mask AP 0.509 in 9.7 min in all (README).
# Measured (benchmarks/train_sweep.py, 1 thread each, tested at 160; docs/history.md): 15 epochs 0.531 mask AP
# (0.519 from a fresh clone, but 12.2 min in all); 12 epochs at a random train scale of 128 or 160 px 0.524. At
# 128 px (the same sweeps): 12 epochs 0.399-0.439, with lr 0.004 0.440, at batch 4 for 3000 steps 0.431;
# trained at 96 and tested at 128, 15 epochs 0.380.
# The decay at 13/14 of the run, a fraction, not "epoch 13": the demo's 14 epochs decay at the start of epoch 13
# as before, and a user's longer run (60 epochs of a small set) decays near its end, not after a fifth of it
# (docs/small_data.md: mask AP 0.023 -> 0.043 on 60 images).
lr_config = dict(policy='step', warmup='linear', warmup_iters=50, warmup_ratio=0.1, step=[13 / 14])
total_epochs = 14
# An epoch_N.pth (142 MB with AdamW's state) every tenth of the run, rounded up to whole epochs: 7 files for the
# demo's 14 epochs, 10 for a 60-image set trained 60 epochs (every epoch would be 60); latest.pth every 200 steps.
# (Checkpoints do not change training: the demo's results are the same as with interval=1.)
checkpoint_config = dict(interval=0.1, latest_iters=200, max_keep_ckpts=3)
log_config = dict(interval=20)
evaluation = dict(interval=0, metric='segm')

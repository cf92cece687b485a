# epoch_N.pth every `interval` epochs, only the newest `max_keep_ckpts` kept (-1: all);
# latest.pth (what --resume reads) also every `latest_iters` iterations.
checkpoint_config = dict(interval=1, latest_iters=200, max_keep_ckpts=3)
log_config = dict(interval=50)  # iterations between log lines / TensorBoard points
evaluation = dict(interval=0, metric='segm')  # interval 0: evaluate once, at the end of training
seed = None
work_dir = None  # default: work_dirs/<config name>
load_from = None
resume_from = None
max_iters = None  # optional cap on the total number of iterations (smoke runs)
accumulate_steps = 1  # gradient accumulation
sync_bn = False  # convert BatchNorm to SyncBatchNorm for distributed training
# optimizer.lr is for base_batch_size images per step; the run's lr is scaled linearly to its own batch
# (images per GPU x GPUs x accumulate_steps). enable=False uses optimizer.lr as it is.
auto_scale_lr = dict(enable=True, base_batch_size=16)

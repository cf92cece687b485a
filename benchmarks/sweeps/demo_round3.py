# Round 3 (issue 11): from 0.44 mask AP toward 0.5 in the same ten minutes: a higher AdamW learning rate, and
# twice the updates at half the batch (same epochs, same lr: auto scaling off).
# python benchmarks/train_sweep.py --variants benchmarks/sweeps/demo_round3.py --amp --threads 1 --parallel 2
CONFIG = "configs/demo/solov2_light_r18_shapes.py"
COMMON = ["checkpoint_config.interval=100", "log_config.interval=50"]

VARIANTS = {
    "lr4e-3": ["optimizer.lr=0.004"],
    "batch4": ["data.imgs_per_gpu=4", "auto_scale_lr.enable=False", "lr_config.warmup_iters=100"],
}

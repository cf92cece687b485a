# The demo recipe with twice the distinct training images for the same ~1000 bf16 steps (issue 11).
# python benchmarks/train_sweep.py --variants benchmarks/sweeps/demo_data2k.py --amp --data runs/demo_data2k
CONFIG = "configs/demo/solov2_light_r18_shapes.py"
TRAIN_IMAGES = 2000
COMMON = ["checkpoint_config.interval=100", "log_config.interval=50"]

VARIANTS = {
    "data2k_step_lr2e-3_e4": ["total_epochs=4", "lr_config.step=[3]"],
}

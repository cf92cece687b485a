# Cheaper heads for the CPU demo (issue 11): the head towers run over every grid cell, half of the demo's forward
# FLOPs with grids [24, 20, 16, 12, 8] on 128-pixel images (5 pixels a cell; the seed's 40 cells at 768 pixels are 19).
# python benchmarks/train_sweep.py --variants benchmarks/sweeps/demo_speed.py --amp --threads 1 --parallel 3
CONFIG = "configs/demo/solov2_light_r18_shapes.py"
COMMON = ["checkpoint_config.interval=100", "log_config.interval=50", "total_epochs=8"]
HALF = "model.bbox_head.num_grids=[12, 10, 8, 6, 4]"

VARIANTS = {
    "g12": [HALF],
    "g12_sigma0.4": [HALF, "model.bbox_head.sigma=0.4"],
    "g12_feat64": [HALF, "model.bbox_head.seg_feat_channels=64"],
}

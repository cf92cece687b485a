# Round 2 (issue 11): the cheaper head (grids [12, 10, 8, 6, 4], 64 tower channels, sigma 0.4: 0.65x the step time
# of the 1000-step recipe) given the same wall time, ~1500 steps; decay timing and 3000 distinct train images.
# python benchmarks/train_sweep.py --variants benchmarks/sweeps/demo_speed2.py --amp --threads 1 --parallel 3
CONFIG = "configs/demo/solov2_light_r18_shapes.py"
HEAD = ["model.bbox_head.num_grids=[12, 10, 8, 6, 4]", "model.bbox_head.seg_feat_channels=64",
        "model.bbox_head.sigma=0.4"]
COMMON = ["checkpoint_config.interval=100", "log_config.interval=50"] + HEAD
DATA3K = ["data.train.ann_file=/tmp/demo_data3k/train/annotations.json",
          "data.train.img_prefix=/tmp/demo_data3k/train/images"]

VARIANTS = {
    "cheap_e12_s11": ["total_epochs=12", "lr_config.step=[11]"],
    "cheap_e12_s9": ["total_epochs=12", "lr_config.step=[9]"],
    "cheap_3k_e4_s3": DATA3K + ["total_epochs=4", "lr_config.step=[3]"],
}

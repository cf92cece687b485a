# Issue 11, part 3: the official shared-cell semantics (every (instance, cell) pair trains its mask, Dice averaged
# over pairs: shared_cells='all_pairs', the default) against the later instance taking the cell ('last_owner'),
# on the demo recipe (configs/demo/solov2_light_r18_shapes.py, 1500 steps), three seeds each.
# python benchmarks/train_sweep.py --variants benchmarks/sweeps/shared_cells_demo.py --amp --threads 1 --parallel 6
CONFIG = "configs/demo/solov2_light_r18_shapes.py"
COMMON = ["checkpoint_config.interval=100", "log_config.interval=50"]

VARIANTS = {f"{mode}_seed{seed}": [f"seed={seed}", f"model.bbox_head.shared_cells='{mode}'"]
            for seed in (0, 1, 2) for mode in ("all_pairs", "last_owner")}

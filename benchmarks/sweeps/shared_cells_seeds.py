# Issue 11, part 3, more seeds: shared_cells='all_pairs' (official, the default) against 'last_owner' on the demo
# config shortened to 6 epochs (750 steps, decay at 5) so that two seeds fit beside the other work, seeds 1 and 2.
# python benchmarks/train_sweep.py --variants benchmarks/sweeps/shared_cells_seeds.py --amp --threads 1 --parallel 2
CONFIG = "configs/demo/solov2_light_r18_shapes.py"
COMMON = ["checkpoint_config.interval=100", "log_config.interval=50", "total_epochs=6", "lr_config.step=[5]"]

VARIANTS = {f"{mode}_seed{seed}": [f"seed={seed}", f"model.bbox_head.shared_cells='{mode}'"]
            for seed in (1, 2) for mode in ("all_pairs", "last_owner")}

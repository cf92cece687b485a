# Issue 11 part 3: official (instance, cell) pairs vs one owner per shared cell, same data, three seeds.
CONFIG = "configs/demo/solov2_light_r18_shapes.py"
COMMON = ["checkpoint_config.interval=100", "log_config.interval=50", "total_epochs=8",
          "optimizer.lr=0.004",
          "lr_config={'policy': 'cosine', 'warmup': 'linear', 'warmup_iters': 50, 'warmup_ratio': 0.1, "
          "'min_lr_ratio': 0.01}"]
VARIANTS = {f"{mode}_seed{seed}": [f"model.bbox_head.shared_cells='{mode}'", f"seed={seed}"]
            for seed in (0, 1, 2) for mode in ("all_pairs", "last_owner")}

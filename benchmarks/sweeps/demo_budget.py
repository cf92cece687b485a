# The CPU demo's recipe at the iteration budget bf16 allows in ~7 minutes (issue 11): ~1000 steps of 8 images.
# python benchmarks/train_sweep.py --variants benchmarks/sweeps/demo_budget.py --amp --threads 1 --parallel 4
import os
import runpy

CONFIG = "configs/demo/solov2_light_r18_shapes.py"
# The cosine schedule's options, as in the earlier sweep of the recipe.
cosine = runpy.run_path(os.path.join(os.path.dirname(__file__), "demo_recipe.py"))["cosine"]
COMMON = ["checkpoint_config.interval=100", "log_config.interval=50"]


VARIANTS = {
    "step_lr2e-3_e8": ["total_epochs=8", "lr_config.step=[7]"],
    "cos_lr2e-3_e8": cosine(0.002, 8),
    "cos_lr4e-3_e8": cosine(0.004, 8),
    "cos_lr4e-3_e8_b4": cosine(0.004, 8) + ["data.imgs_per_gpu=4"],
}

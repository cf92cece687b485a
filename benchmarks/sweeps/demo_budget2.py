# Round 2 of the demo recipe at ~1000 bf16 steps (issue 11): lower lr, earlier decay, and fp32 at the same steps.
# python benchmarks/train_sweep.py --variants benchmarks/sweeps/demo_budget2.py --amp --threads 1 --parallel 4
CONFIG = "configs/demo/solov2_light_r18_shapes.py"
COMMON = ["checkpoint_config.interval=100", "log_config.interval=50", "total_epochs=8"]

VARIANTS = {
    "step_lr1e-3_e8": ["optimizer.lr=0.001", "lr_config.step=[7]"],
    "step_lr2e-3_e8_s6": ["lr_config.step=[6]"],
    "step_lr1e-3_e8_s6_wu100": ["optimizer.lr=0.001", "lr_config.step=[6]", "lr_config.warmup_iters=100"],
}

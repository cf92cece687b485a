# Variants of the CPU demo's recipe (configs/demo/solov2_light_r18_shapes.py), 1000 train / 100 val images.
CONFIG = "configs/demo/solov2_light_r18_shapes.py"
COMMON = ["checkpoint_config.interval=100", "log_config.interval=50"]


def cosine(lr, epochs, warmup=50):
    return [f"optimizer.lr={lr}", f"total_epochs={epochs}",
            f"lr_config={{'policy': 'cosine', 'warmup': 'linear', 'warmup_iters': {warmup}, 'warmup_ratio': 0.1, "
            f"'min_lr_ratio': 0.01}}"]


VARIANTS = {
    "step_lr2e-3_e8": ["total_epochs=8", "lr_config.step=[7]"],
    "cos_lr2e-3_e8": cosine(0.002, 8),
    "cos_lr4e-3_e8": cosine(0.004, 8),
    "cos_lr6e-3_e8": cosine(0.006, 8),
    "cos_lr4e-3_e8_nozir": cosine(0.004, 8) + ["model.backbone.zero_init_residual=False"],
    "cos_lr4e-3_e8_lastowner": cosine(0.004, 8) + ["model.bbox_head.shared_cells='last_owner'"],
    "cos_lr4e-3_e12": cosine(0.004, 12),
    "cos_lr8e-3_e8_b16": cosine(0.008, 16) + ["data.imgs_per_gpu=16"],
}

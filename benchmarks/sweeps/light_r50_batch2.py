# Issue 11 part 1: the light R50 (COCO config) from scratch at 2 images per step, with the linearly scaled
# learning rate (0.01 * 2 / 16) and with 8x that, on the demo's shapes (upscaled to the 448 test scale).
CONFIG = "configs/solov2/coco/solov2_light_448_r50_fpn_3x.py"
COMMON = ["model.pretrained=None", "model.bbox_head.num_classes=5", "data.imgs_per_gpu=2", "max_iters=300",
          "lr_config.warmup_iters=100", "log_config.interval=10", "checkpoint_config.interval=100",
          "evaluation={'interval': 0, 'metric': 'segm'}"]
VARIANTS = {
    "lr0.00125": ["optimizer.lr=0.00125"],
    "lr0.01": ["optimizer.lr=0.01"],
    "lr0.01_nozir": ["optimizer.lr=0.01", "model.backbone.zero_init_residual=False"],
    "lr0.00125_nozir": ["optimizer.lr=0.00125", "model.backbone.zero_init_residual=False"],
}

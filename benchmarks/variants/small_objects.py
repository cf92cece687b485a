"""Small objects in larger images: 160 px images whose shapes are 6-20 px across (the demo's are 12-77 px in
128 px images), 100 training images, 20 epochs at the images' own size, with the demo's fixed scale ranges and
with ``scale_ranges='auto'`` (fitted to the training set when training starts, as ``check-data --fit``).

    python benchmarks/train_sweep.py --variants benchmarks/variants/small_objects.py \\
        --data runs/small_objects --out runs/sweep_small --seeds 0 1 2 --parallel 2 --threads 1
"""
CONFIG = "configs/demo/solov2_light_r18_shapes.py"
TRAIN_IMAGES, VAL_IMAGES, IMAGE_SIZE = 100, 200, 160
SHAPES = {"object_size": (6, 20)}
SEEDS = (30, 31)
COMMON = ["total_epochs=20", "lr_config.step=[0.93]", "data.train.augment=None",
          "model.transform.train_scales=[(160, 160)]", "model.transform.test_scale=(160, 160)"]
VARIANTS = {
    "fixed_ranges": [],
    "auto_ranges": ["model.bbox_head.scale_ranges=auto"],
}

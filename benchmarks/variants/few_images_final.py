"""The few-image regime on a third data set, looked at only for the final check of the small-data recipe: four of
the five classes (disc, rectangle, ring, star), objects of 10-64 px, other seeds; 60 training images of 128 px,
60 epochs, as in few_images.py. (Set B, few_images_heldout.py, was used to screen variants, so it is no longer
data the recipe was not tuned on.)

    python benchmarks/train_sweep.py --variants benchmarks/variants/few_images_final.py \\
        --data runs/few_c --out runs/sweep_few_c --seeds 0 1 2 --parallel 2 --threads 1
"""
import os
import runpy

_few = runpy.run_path(os.path.join(os.path.dirname(__file__), "few_images.py"))
CONFIG, COMMON = _few["CONFIG"], _few["COMMON"]
TRAIN_IMAGES, VAL_IMAGES, IMAGE_SIZE = 60, 300, 128
SHAPES = {"classes": ("disc", "rectangle", "ring", "star"), "object_size": (10, 64)}
SEEDS = (40, 41)
VARIANTS = {name: _few["VARIANTS"][name] for name in ("as_before", "copy_paste_lsj", "small_data")}

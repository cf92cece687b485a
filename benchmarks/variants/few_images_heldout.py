"""The few-image regime on a second data set that the recipe was not tuned on: three of the five classes
(triangle, ring, star), smaller objects (8-48 px instead of 12-77 px), other seeds; 60 training images of
128 px, 60 epochs, as in few_images.py.

    python benchmarks/train_sweep.py --variants benchmarks/variants/few_images_heldout.py \\
        --data runs/few_b --out runs/sweep_few_b --seeds 0 1 2 --parallel 2 --threads 1
"""
import os
import runpy

_few = runpy.run_path(os.path.join(os.path.dirname(__file__), "few_images.py"))
CONFIG, COMMON = _few["CONFIG"], _few["COMMON"]
TRAIN_IMAGES, VAL_IMAGES, IMAGE_SIZE = 60, 300, 128
SHAPES = {"classes": ("triangle", "ring", "star"), "object_size": (8, 48)}
SEEDS = (20, 21)
VARIANTS = _few["VARIANTS"]

"""The few-image regime of docs/training.md: the demo config as a user takes it for 60 training images of
128 px and 60 epochs (480 steps at batch 8), with and without each small-data switch.

    python benchmarks/train_sweep.py --variants benchmarks/variants/few_images.py --data runs/few_a \\
        --out runs/sweep_few_a --seeds 0 1 2 --parallel 2 --threads 1

``few_images_heldout.py`` is the same sweep on a second data set (other classes and object sizes) that the
recipe was not tuned on.
"""
CONFIG = "configs/demo/solov2_light_r18_shapes.py"
TRAIN_IMAGES, VAL_IMAGES, IMAGE_SIZE = 60, 300, 128
# The fixed epoch step of the demo's 14 epochs would decay the lr at epoch 13 of 60; "as before" keeps it.
OLD_SCHEDULE = ["lr_config.step=[13]"]
SCHEDULE = ["lr_config.step=[0.93]"]
EMA = ["ema={'decay': 0.999, 'warmup': 200}"]
COPY_PASTE = {"copy_paste": 0.5}
LSJ = {"lsj": {"size": (128, 128), "scale": (0.5, 2.0)}}
# The demo config now turns copy-paste and jitter on for sets of at most 200 images: off here unless a variant
# sets them, so that every row is the recipe it names.
COMMON = ["total_epochs=60", "data.train.augment=None"]
VARIANTS = {
    "as_before": OLD_SCHEDULE,
    "schedule": SCHEDULE,
    "schedule_ema": SCHEDULE + EMA,
    "schedule_copy_paste": SCHEDULE + [f"data.train.augment={COPY_PASTE}"],
    "schedule_lsj": SCHEDULE + [f"data.train.augment={LSJ}"],
    # the default for small sets (the demo config's data.train.augment, which applies up to 200 images)
    "copy_paste_lsj": SCHEDULE + [f"data.train.augment={dict(**COPY_PASTE, **LSJ)}"],
    "all": SCHEDULE + EMA + [f"data.train.augment={dict(**COPY_PASTE, **LSJ)}"],
}

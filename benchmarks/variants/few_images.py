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
LSJ_160 = {"lsj": {"size": (160, 160), "scale": (0.5, 2.0)}}
LSJ_UP = {"lsj": {"size": (128, 128), "scale": (0.8, 2.0)}}
SMALL_DATA = dict(copy_paste=1.0, lsj={"scale": (0.5, 2.0)}, min_train_scale=(160, 160), min_test_scale=(192, 192))
# The demo config now turns copy-paste and jitter on for sets of at most 200 images: off here unless a variant
# sets them, so that every row is the recipe it names.
COMMON = ["total_epochs=60", "data.train.augment=None"]
VARIANTS = {
    "as_before": OLD_SCHEDULE,
    "schedule": SCHEDULE,
    "schedule_ema": SCHEDULE + EMA,
    "schedule_copy_paste": SCHEDULE + [f"data.train.augment={COPY_PASTE}"],
    "schedule_lsj": SCHEDULE + [f"data.train.augment={LSJ}"],
    # the small-data default before the recipe below (p 0.5, jitter to the 128 px train scale)
    "copy_paste_lsj": SCHEDULE + [f"data.train.augment={dict(**COPY_PASTE, **LSJ)}"],
    "all": SCHEDULE + EMA + [f"data.train.augment={dict(**COPY_PASTE, **LSJ)}"],
    # The demo config's small-data recipe now (its data.train.augment, which applies up to 200 images).
    "small_data": SCHEDULE + [f"data.train.augment={SMALL_DATA}"],
    # Screened on set B (seed 0) when copy_paste_lsj stayed below the 0.11 there (docs/small_data.md).
    "cp_always": SCHEDULE + [f"data.train.augment={dict(LSJ, copy_paste=1.0)}"],
    "cp_always_160": SCHEDULE + [f"data.train.augment={dict(copy_paste=1.0, lsj=LSJ_160['lsj'])}",
                                 "model.transform.train_scales=[(160, 160)]"],
    "cp_lsj_batch4": SCHEDULE + [f"data.train.augment={dict(**COPY_PASTE, **LSJ)}", "data.imgs_per_gpu=4"],
    "cp_lsj_lr4": SCHEDULE + [f"data.train.augment={dict(**COPY_PASTE, **LSJ)}", "optimizer.lr=0.004"],
    "cp_lsj_wd05": SCHEDULE + [f"data.train.augment={dict(**COPY_PASTE, **LSJ)}", "optimizer.weight_decay=0.05"],
    "cp_lsj_upscale": SCHEDULE + [f"data.train.augment={dict(**COPY_PASTE, lsj=LSJ_UP['lsj'])}"],
}

"""The ``solov2`` command: train, eval, predict, demo, data tools, export, convert, benchmark."""
from __future__ import annotations

import argparse
import glob
import itertools
import json
import logging
import os
import posixpath
import shlex
import sys
import time
from pathlib import Path

REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm"}
PRECISIONS = ["fp32", "bf16", "fp16"]  # solov2.predictor.PRECISIONS, without importing torch for --help
FROM_CHECKPOINT = ("a checkpoint written by `solov2 train` (it carries its config and class names), or a .py config "
                   "file and then the checkpoint (the config's test-time settings are used; needed for older and "
                   "official SOLO checkpoints)")


def setup_logging(work_dir: str | None = None, rank: int = 0) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if work_dir and rank == 0:
        os.makedirs(work_dir, exist_ok=True)
        handlers.append(logging.FileHandler(os.path.join(work_dir, "train.log")))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, handlers=handlers, force=True,
                        format="%(asctime)s %(message)s", datefmt="%H:%M:%S")


# ----------------------------------------------------------------------------- train
def _default_device() -> str:
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def train_main(config: str, work_dir: str | None = None, resume: str | None = None, cfg_options=None,
               device: str | None = None, amp: bool = False, gpus: int = 1, launcher: str = "auto",
               seed: int | None = None, deterministic: bool = False) -> dict:
    """Train from a config file: one process, ``gpus`` spawned local processes, or under torchrun."""
    from .config import load_config
    from .engine import distributed as du
    cfg = load_config(config, cfg_options)  # fail fast, before any process is started
    work_dir = work_dir or cfg.get("work_dir") or os.path.join("work_dirs", Path(config).stem)
    if resume == "auto":
        resume = os.path.join(work_dir, "latest.pth")
    resume = resume or cfg.get("resume_from")
    if resume and not os.path.isfile(resume):
        raise FileNotFoundError(f"{resume}: checkpoint to resume from not found")
    device = device or _default_device()
    seed = seed if seed is not None else (cfg.get("seed") or 0)
    opts = dict(config=config, cfg_options=cfg_options, work_dir=work_dir, resume=resume, device=device, amp=amp,
                seed=seed, deterministic=deterministic)
    if launcher == "torchrun" or (launcher == "auto" and du.in_torchrun()):
        return _train_worker(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), opts)
    if gpus > 1:
        if device == "cpu":
            print(f"CUDA is not available: starting {gpus} CPU processes with the gloo backend", flush=True)
        elif gpus > __import__("torch").cuda.device_count():
            raise ValueError(f"--gpus {gpus}: only {__import__('torch').cuda.device_count()} CUDA devices visible")
        import torch.multiprocessing
        stopped_at = torch.multiprocessing.get_context("spawn").Value("q", -1)  # iteration saved on Ctrl-C
        if du.spawn(_spawned_worker, gpus, (gpus, opts, stopped_at)) or stopped_at.value >= 0:
            from .engine.interrupt import TrainingInterrupted
            raise TrainingInterrupted(os.path.join(work_dir, "latest.pth"),
                                      stopped_at.value if stopped_at.value >= 0 else None)
        return _read_metrics(work_dir)
    return _train_worker(0, 1, opts)


def _spawned_worker(rank: int, world: int, opts: dict, stopped_at) -> None:
    from .engine.interrupt import TrainingInterrupted, deferred_sigint
    with deferred_sigint():  # from the start, so that an early Ctrl-C is not lost (the trainer checks it)
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
        if opts["device"] == "cpu":
            # N processes x the default thread count oversubscribe the cores, and OpenMP then slows to a crawl.
            import torch
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
        try:
            _train_worker(rank, world, opts)
        except TrainingInterrupted as exc:  # every process stopped at the same iteration; rank 0 saved it
            if rank == 0:
                stopped_at.value = exc.iteration


def _train_worker(rank: int, world: int, opts: dict) -> dict:
    from .config import load_config
    from .engine import distributed as du
    from .engine.trainer import Trainer
    setup_logging(opts["work_dir"], rank)
    if world > 1 and not du.is_distributed():
        du.init_process_group(rank, world, opts["device"])
    device = opts["device"]
    if device == "cuda" and world > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}"
    try:
        cfg = load_config(opts["config"], opts["cfg_options"])
        if rank == 0:
            os.makedirs(opts["work_dir"], exist_ok=True)
            cfg.dump(os.path.join(opts["work_dir"], Path(opts["config"]).name))
            logging.getLogger("solov2").info("training %s in %s on %s x%d", opts["config"], opts["work_dir"],
                                             device, world)
        trainer = Trainer(cfg, opts["work_dir"], device=device, amp=opts["amp"], resume=opts["resume"],
                          seed=opts["seed"], deterministic=opts["deterministic"])
        return trainer.run()
    finally:
        du.cleanup()


def _read_metrics(work_dir: str) -> dict:
    path = os.path.join(work_dir, "metrics.json")
    return json.load(open(path)) if os.path.exists(path) else {}


# ----------------------------------------------------------------------------- eval
def eval_main(config: str | None, checkpoint: str, metric: str | None = None, metrics_out: str | None = None,
              cfg_options=None, device: str | None = None, split: str = "val", out_dir: str | None = None,
              precision: str = "fp32", optimize: bool = False) -> dict:
    """Evaluate a checkpoint on ``data.<split>`` (default ``val``, the set training evaluates on) of the config,
    or (``config`` None) of the config the checkpoint was trained with; ``precision``/``optimize`` evaluate the
    model as the Predictor would run it."""
    import torch
    from .checkpoint_config import check_eval_classes, resolve_model
    from .config import ConfigError
    from .data import build_dataset
    from .engine.evaluate import evaluate, inference_on_dataset
    from .predictor import autocast_dtype, load_model, precision_autocast
    resolved = resolve_model(config, checkpoint, cfg_options)
    cfg = resolved.cfg
    device = device or _default_device()
    dtype = autocast_dtype(precision, device)
    model, _ = load_model(cfg, resolved.ckpt, device, optimize, name=checkpoint)
    if cfg.data.get(split) is None:
        raise ConfigError(f"{config or checkpoint}: data.{split} is not set; evaluate another one with --split")
    dataset = build_dataset(cfg.data[split])
    check_eval_classes(resolved, dataset, f"data.{split}")
    metric = metric or (cfg.get("evaluation") or {}).get("metric", "segm")
    with torch.inference_mode(), precision_autocast(dtype, device):
        encoded = inference_on_dataset(model, dataset, device)
    out_dir = out_dir or os.path.join(os.path.dirname(os.path.abspath(checkpoint)), "eval")
    metrics = evaluate(dataset, encoded, metric, out_dir)
    if metrics_out:
        os.makedirs(os.path.dirname(os.path.abspath(metrics_out)), exist_ok=True)
        with open(metrics_out, "w") as f:
            json.dump(metrics, f, indent=2)
    return metrics


# ----------------------------------------------------------------------------- predict
def collect_inputs(inputs: list[str]) -> list[str]:
    """Files, folders (recursively) and globs -> sorted image and video paths."""
    return [path for path, _ in collect_named_inputs(inputs)]


def collect_named_inputs(inputs: list[str]) -> list[tuple[str, str]]:
    """Files, folders (recursively) and globs -> ``(path, output name)`` of each image and video.

    The output name is the path relative to the folder given (``cam1/frame.png`` for ``FOLDER/cam1/frame.png``),
    or the file name for a file or a glob match, extension kept, so that ``cam1/frame.png`` and
    ``cam2/frame.png``, or ``img.webp`` and ``img.bmp``, get different outputs. Should two inputs still get
    the same name (``a/x.png b/x.png``), the later one gets ``_2``, ``_3``, ... after its name. A file found
    twice is predicted once.
    """
    found: list[tuple[str, str]] = []
    for item in inputs:
        if os.path.isdir(item):
            files = [p for p in sorted(Path(item).rglob("*")) if p.suffix.lower() in IMAGE_EXTS | VIDEO_EXTS]
            if not files:
                raise ValueError(f"{item}: folder has no images or videos")
            found += [(str(p), p.relative_to(item).as_posix()) for p in files]
        elif os.path.isfile(item):
            found.append((item, os.path.basename(item)))
        else:
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise ValueError(f"{item}: no such file, folder or glob match")
            found += [(m, os.path.basename(m)) for m in matches if os.path.isfile(m)]
    named, seen_paths, used = [], set(), set()
    for path, name in found:
        key = os.path.realpath(path)
        if key in seen_paths:
            continue
        seen_paths.add(key)
        unique, k = name, 1
        while unique in used:
            k += 1
            unique = f"{name}_{k}"
        used.add(unique)
        named.append((path, unique))
    return named


def predict_main(config: str | None, checkpoint: str, inputs: list[str], out: str = "runs/predict",
                 score_thr: float = 0.3, device: str | None = None, save_json: bool = True,
                 save_masks: bool = False, precision: str = "fp32", optimize: bool = True,
                 ann_file: str | None = None) -> list[str]:
    """Pictures (``OUT/<name>_pred.png``, ``<name>`` from :func:`collect_named_inputs`), videos
    (``OUT/<name>_pred.mp4``) and ``OUT/results.json``. Unreadable inputs are skipped with a one-line
    warning and listed at the end; if none can be read, a ``ValueError`` says why.
    ``results.json`` ids: see :class:`_ResultIds`."""
    from tqdm import tqdm
    from .data.errors import DataError
    from .evaluation.coco import results_to_coco
    from .data.image import read_rgb as read_image
    from .predictor import Predictor
    from .visualize import save_image
    named = collect_named_inputs(inputs)
    predictor = Predictor(config, checkpoint, device=device or _default_device(), score_thr=score_thr,
                          precision=precision, optimize=optimize)
    os.makedirs(out, exist_ok=True)
    ids = _ResultIds(predictor, ann_file)
    written, coco, skipped = [], [], []
    for path, name in tqdm(named, desc="predict", dynamic_ncols=True):
        target = os.path.join(out, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            if Path(path).suffix.lower() in VIDEO_EXTS:
                def on_frame(k, result, path=path):
                    for r in results_to_coco(result, k, ids.cat_ids):
                        coco.append({**r, "file_name": f"{path}#{k}", "frame": k,
                                     "category_name": ids.category_name(r["category_id"])})
                written.append(_predict_video(predictor, path, f"{target}_pred.mp4", on_frame))
                continue
            image = read_image(path)
        except DataError as exc:
            tqdm.write(f"warning: {one_line(exc)}; skipped", file=sys.stderr)
            skipped.append((path, one_line(exc)))
            continue
        result = predictor(image)
        save_image(f"{target}_pred.png", predictor.draw(image, result))
        written.append(f"{target}_pred.png")
        if save_masks:
            _save_masks(result, f"{target}_masks")
        image_id = ids.image_id(path, name)
        if image_id is None:
            continue
        for r in results_to_coco(result, 0, ids.cat_ids):
            coco.append({**r, "image_id": image_id, "file_name": path,
                         "category_name": ids.category_name(r["category_id"])})
    if skipped and not written:
        raise ValueError(skipped[0][1] if len(skipped) == 1 else
                         f"none of the {len(skipped)} inputs could be read (first: {skipped[0][1]})")
    if save_json:
        with open(os.path.join(out, "results.json"), "w") as f:
            json.dump(coco, f)
    if skipped:
        print(f"skipped {len(skipped)} unreadable input(s): {', '.join(p for p, _ in skipped)}", file=sys.stderr)
    return written


class _ResultIds:
    """The ids ``results.json`` uses, so that ``COCO.loadRes`` takes it against the user's annotations.

    * ``category_id``: the training data's category ids (``predictor.cat_ids``, from the checkpoint); for a
      checkpoint without them, the ``--ann`` file's sorted category ids if it has one per class, else 1..C
      (label + 1, as ``labelme-to-coco`` and most COCO files number them).
    * ``image_id``: with ``--ann FILE.json``, the id of the image whose ``file_name`` the input path ends with
      (images not in the file are warned about and left out of ``results.json``); without it, 1, 2, ... in
      input order. Video frames: the frame index (0-based), ``file_name`` = ``VIDEO#FRAME``.
    """

    def __init__(self, predictor, ann_file: str | None):
        n = len(predictor.class_names)
        self.names = list(predictor.class_names)
        self.by_file: dict[str, object] | None = None
        cat_ids = getattr(predictor, "cat_ids", None)
        if ann_file:
            from .data.errors import DataError
            try:
                with open(ann_file, encoding="utf-8") as f:
                    data = json.load(f)
                self.by_file = {}  # base name -> [(normalized file_name, image id)]
                for im in data["images"]:
                    fn = posixpath.normpath(str(im["file_name"]).replace("\\", "/"))
                    self.by_file.setdefault(posixpath.basename(fn), []).append((fn, im["id"]))
                file_cats = sorted(c["id"] for c in data.get("categories") or [])
            except FileNotFoundError:
                raise FileNotFoundError(f"{ann_file}: annotation file (--ann) not found") from None
            except (ValueError, KeyError, TypeError) as exc:
                raise DataError(f"{ann_file}: not a COCO file with 'images' ({one_line(exc)})") from None
            if not cat_ids and len(file_cats) == n:
                cat_ids = file_cats
        self.cat_ids = [int(c) for c in cat_ids] if cat_ids else list(range(1, n + 1))
        self.name_of = dict(zip(self.cat_ids, self.names))
        self.next_id = 0

    def category_name(self, category_id: int) -> str:
        return self.name_of[category_id]

    def image_id(self, path: str, name: str):
        if self.by_file is None:
            self.next_id += 1
            return self.next_id
        posix = Path(os.path.abspath(path)).as_posix()
        matches = [(fn, i) for fn, i in self.by_file.get(posixpath.basename(posix), [])
                   if posix == fn or posix.endswith("/" + fn)]
        if not matches:
            from tqdm import tqdm
            tqdm.write(f"warning: {path}: not among the images of --ann; its results are not in results.json",
                       file=sys.stderr)
            return None
        return max(matches, key=lambda m: len(m[0]))[1]  # the longest file_name the path ends with


def _save_masks(result: dict, folder: str) -> None:
    from PIL import Image
    os.makedirs(folder, exist_ok=True)
    for k, (mask, name, score) in enumerate(zip(result["masks"], result["class_names"], result["scores"])):
        Image.fromarray(mask.astype("uint8") * 255).save(os.path.join(folder, f"{k:03d}_{name}_{score:.2f}.png"))


def _predict_video(predictor, path: str, target: str, on_frame=None) -> str:
    """``target``: the annotated video; ``on_frame(index, result)`` is called for every frame if given."""
    import cv2
    from tqdm import tqdm
    from .data.errors import DataError
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise DataError(f"{path}: cannot open video")
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    writer = None
    with tqdm(total=frames, desc=os.path.basename(path), unit="frame", dynamic_ncols=True, leave=False) as bar:
        for index in itertools.count():
            ok, frame = cap.read()
            if not ok:
                break
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            result = predictor(rgb)
            if on_frame is not None:
                on_frame(index, result)
            drawn = predictor.draw(rgb, result)
            if writer is None:
                h, w = drawn.shape[:2]  # pictures of small frames are enlarged
                writer = cv2.VideoWriter(target, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
            writer.write(cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
            bar.update(1)
    cap.release()
    if writer is None:
        raise DataError(f"{path}: video has no readable frames")
    writer.release()
    return target


# ----------------------------------------------------------------------------- data tools
def check_data_main(config: str, cfg_options=None, split: str = "train", out: str | None = None):
    """``solov2 check-data``: the data report of ``data.<split>`` (text on stdout, ``data_report.png`` in
    ``out``, default the work dir that ``train`` would use). Returns the :class:`~solov2.data.report.DataReport`."""
    import warnings
    from .config import ConfigError, load_config
    from .data import build_dataset
    from .data.report import data_report, format_report, head_scale_ranges, save_report_picture, training_scale
    cfg = load_config(config, cfg_options)
    if cfg.data.get(split) is None:
        raise ConfigError(f"{config}: data.{split} is not set; data has {sorted(k for k in cfg.data if k in ('train', 'val', 'test'))}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # dropped annotations are listed by the report itself
        dataset = build_dataset(cfg.data[split])
    report = data_report(dataset, head_scale_ranges(cfg), training_scale(cfg) if split == "train" else None)
    print(format_report(report))
    out = out or cfg.get("work_dir") or os.path.join("work_dirs", Path(config).stem)
    print(f"wrote {save_report_picture(report, os.path.join(out, 'data_report.png'))}")
    return report


def labelme_to_coco_main(folder: str, out_json: str, image_root: str | None = None) -> dict:
    from .data.labelme import labelme_to_coco
    data = labelme_to_coco(folder, out_json, image_root)
    print(f"wrote {out_json}: {len(data['images'])} images, {len(data['annotations'])} instances, "
          f"{len(data['categories'])} classes ({', '.join(c['name'] for c in data['categories'])}); "
          f"file_name is relative to {image_root or folder}")
    return data


# ----------------------------------------------------------------------------- demo
def demo_main(out: str = "runs/demo", train_images: int = 1000, val_images: int = 100, image_size: int = 128,
              cfg_options=None, amp: bool = False) -> dict:
    """Built-in data -> train a small SOLOv2 on CPU -> mask AP on the val split -> pictures in ``out``.

    ``amp=True`` trains with bf16 autocast: 35 % less time per step on CPUs with native bf16, but its mask AP
    over two runs (0.210, 0.185) against fp32's (0.203, 0.208) does not yet show that it costs nothing, so fp32
    is the default (docs/training.md)."""
    from .data.synthetic import write_shapes_coco
    start = time.time()
    data_dir = os.path.join(out, "data")
    for split, n, seed in (("train", train_images, 0), ("val", val_images, 1)):
        if not os.path.exists(os.path.join(data_dir, split, "annotations.json")):
            write_shapes_coco(os.path.join(data_dir, split), num_images=n, seed=seed, image_size=image_size)
    options = {"data.train.ann_file": f"{data_dir}/train/annotations.json",
               "data.train.img_prefix": f"{data_dir}/train/images",
               "data.val.ann_file": f"{data_dir}/val/annotations.json",
               "data.val.img_prefix": f"{data_dir}/val/images",
               "data.test.ann_file": f"{data_dir}/val/annotations.json",
               "data.test.img_prefix": f"{data_dir}/val/images"}
    options.update(cfg_options or {})
    config = str(REPO_CONFIGS / "demo" / "solov2_light_r18_shapes.py")
    if amp and not cpu_has_native_bf16():
        print("note: this CPU has no native bf16 (AVX512-BF16 / AMX): --amp will be slower than fp32", flush=True)
    metrics = train_main(config, work_dir=out, cfg_options=options, device="cpu", amp=amp)
    val_images_dir = os.path.join(data_dir, "val", "images")
    examples = sorted(os.listdir(val_images_dir))[:8]
    pictures = predict_main(config, os.path.join(out, "latest.pth"),
                            [os.path.join(val_images_dir, e) for e in examples],
                            out=os.path.join(out, "pictures"), score_thr=0.3, device="cpu")
    minutes = (time.time() - start) / 60
    print(f"\ndemo: mask AP {metrics.get('mask_AP', 0):.3f}, AP50 {metrics.get('mask_AP50', 0):.3f}, "
          f"AP75 {metrics.get('mask_AP75', 0):.3f} on {val_images} val images; {minutes:.1f} min; "
          f"{len(pictures)} pictures in {os.path.join(out, 'pictures')}")
    return metrics


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (Linux ``avx512_bf16`` / ``amx_bf16`` flags); elsewhere False,
    since emulated bf16 is slower than fp32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="solov2", description="SOLOv2 instance segmentation")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model from a config file")
    t.add_argument("config")
    t.add_argument("--work-dir")
    t.add_argument("--resume", nargs="?", const="auto", default=None,
                   help="resume from CKPT, or from WORK_DIR/latest.pth when no path is given")
    t.add_argument("--cfg-options", nargs="+", default=None, metavar="KEY=VALUE")
    t.add_argument("--device", choices=["cpu", "cuda"])
    t.add_argument("--amp", action="store_true", help="mixed precision (fp16 on CUDA, bf16 on CPU)")
    t.add_argument("--gpus", type=int, default=1, help="local processes (one per GPU; CPU processes without CUDA)")
    t.add_argument("--launcher", choices=["auto", "none", "torchrun"], default="auto")
    t.add_argument("--seed", type=int)
    t.add_argument("--deterministic", action="store_true")

    e = sub.add_parser("eval", help="evaluate a checkpoint (COCO mask AP or Cityscapes AP)")
    e.add_argument("sources", nargs="+", metavar="[CONFIG.py] CHECKPOINT", help=FROM_CHECKPOINT)
    e.add_argument("--metric", choices=["segm", "cityscapes"])
    e.add_argument("--metrics-out")
    e.add_argument("--split", default="val", choices=["train", "val", "test"],
                   help="which data set of the config to evaluate: data.val (default, the validation set "
                        "of the README's own-data recipe), data.test or data.train")
    e.add_argument("--cfg-options", nargs="+", default=None, metavar="KEY=VALUE")
    e.add_argument("--device", choices=["cpu", "cuda"])
    e.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="network precision, as for predict (default fp32)")
    e.add_argument("--optimize", action="store_true",
                   help="evaluate the optimized model that predict runs (BatchNorm folded, channels_last, Winograd)")

    pr = sub.add_parser("predict", help="predict on images, folders, globs or videos and draw the results")
    pr.add_argument("sources", nargs="+", metavar="[CONFIG.py] CHECKPOINT INPUT",
                    help=FROM_CHECKPOINT + "; then images, folders, globs or videos")
    pr.add_argument("--out", default="runs/predict")
    pr.add_argument("--score-thr", type=float, default=0.3)
    pr.add_argument("--device", choices=["cpu", "cuda"])
    pr.add_argument("--save-json", action=argparse.BooleanOptionalAction, default=True,
                    help="write results.json (COCO results, RLE masks; default on)")
    pr.add_argument("--ann", metavar="FILE.json",
                    help="the images' COCO file: results.json then uses its image ids (matched by file_name) "
                         "so that COCO.loadRes accepts it against these annotations")
    pr.add_argument("--save-masks", action="store_true", help="one PNG per instance")
    pr.add_argument("--precision", choices=PRECISIONS, default="fp32",
                    help="network precision: bf16 on CPU (about 2x faster with AVX512-BF16/AMX) or CUDA, "
                         "fp16 on CUDA; post-processing stays fp32")
    pr.add_argument("--no-optimize", dest="optimize", action="store_false",
                    help="run the model as built (no BatchNorm folding, channels_last or Winograd)")

    d = sub.add_parser("demo", help="built-in data -> train on CPU -> mask AP -> pictures")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--train-images", type=int, default=1000)
    d.add_argument("--val-images", type=int, default=100)
    d.add_argument("--image-size", type=int, default=128)
    d.add_argument("--cfg-options", nargs="+", default=None, metavar="KEY=VALUE")
    d.add_argument("--amp", action="store_true",
                   help="bf16 autocast in training: about 35%% less time per step on CPUs with native bf16 "
                        "(AVX512-BF16 or AMX); fp32 by default (docs/training.md)")

    m = sub.add_parser("make-shapes", help="write the built-in synthetic data set as a COCO folder")
    m.add_argument("out")
    m.add_argument("--num-images", type=int, default=200)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--image-size", type=int, nargs=2, default=[256, 256], metavar=("H", "W"))

    c = sub.add_parser("cityscapes-to-coco", help="convert Cityscapes polygons to a COCO instance JSON")
    c.add_argument("root")
    c.add_argument("out_json")
    c.add_argument("--split", default="train")

    cd = sub.add_parser("check-data", help="report on a config's training data before training: images, "
                        "instances per class, dropped annotations, instance sizes per FPN level")
    cd.add_argument("config")
    cd.add_argument("--cfg-options", nargs="+", default=None, metavar="KEY=VALUE")
    cd.add_argument("--split", default="train", choices=["train", "val", "test"],
                    help="which data set of the config (default train; sizes are then measured at the "
                         "middle training scale, else at the images' own size)")
    cd.add_argument("--out", help="folder for data_report.png (default: the work dir train would use)")

    lm = sub.add_parser("labelme-to-coco", help="convert a folder of LabelMe JSON files to one COCO instance JSON")
    lm.add_argument("folder", help="folder searched recursively for LabelMe *.json files")
    lm.add_argument("out_json")
    lm.add_argument("--image-root", help="folder that file_name is written relative to (default: FOLDER); "
                    "use it as img_prefix / the second argument of CocoDataset")

    x = sub.add_parser("export", help="export to ONNX or TorchScript")
    x.add_argument("sources", nargs="+", metavar="[CONFIG.py] CHECKPOINT", help=FROM_CHECKPOINT)
    x.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    x.add_argument("--out", required=True)
    x.add_argument("--input-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="static input size, multiples of 32 (default: a square of the test scale's long side, "
                        "which holds any aspect ratio)")
    x.add_argument("--dynamic", action="store_true")
    x.add_argument("--cfg-options", nargs="+", default=None, metavar="KEY=VALUE",
                   help="test-time settings to export with, e.g. model.test_cfg.score_thr=0.2")
    x.add_argument("--with-postprocess", action="store_true",
                   help="put post-processing (thresholds, dynamic masks, Matrix NMS) into the graph")

    cv = sub.add_parser("convert", help="convert SOLO / MMDetection 3.x / AdelaiDet checkpoints to ours")
    cv.add_argument("--from", dest="source", choices=["solo", "mmdet", "adelaidet"], required=True)
    cv.add_argument("input")
    cv.add_argument("output")

    from .benchmark import add_arguments as add_benchmark_arguments
    add_benchmark_arguments(sub.add_parser("benchmark", help="latency, throughput and memory"))
    return p


def run(args: argparse.Namespace) -> None:
    from .config import parse_overrides
    opts = parse_overrides(args.cfg_options) if getattr(args, "cfg_options", None) else None
    if args.command in ("eval", "predict", "export"):
        from .checkpoint_config import split_sources
        args.config, args.checkpoint, rest = split_sources(args.sources, args.command)
        if args.command == "predict":
            if not rest:
                raise ValueError(f"solov2 predict: no images or videos given after the checkpoint {args.checkpoint}")
            args.inputs = rest
        elif rest:
            raise ValueError(f"solov2 {args.command}: unexpected argument(s) {rest}; expected [CONFIG.py] CHECKPOINT")
    if args.command == "train":
        train_main(args.config, args.work_dir, args.resume, opts, args.device, args.amp, args.gpus,
                   args.launcher, args.seed, args.deterministic)
    elif args.command == "eval":
        eval_main(args.config, args.checkpoint, args.metric, args.metrics_out, opts, args.device, args.split,
                  precision=args.precision, optimize=args.optimize)
    elif args.command == "predict":
        written = predict_main(args.config, args.checkpoint, args.inputs, args.out, args.score_thr, args.device,
                               args.save_json, args.save_masks, args.precision, args.optimize, args.ann)
        print(f"wrote {len(written)} result(s) to {args.out}")
    elif args.command == "demo":
        demo_main(args.out, args.train_images, args.val_images, args.image_size, opts, args.amp)
    elif args.command == "make-shapes":
        from .data.synthetic import write_shapes_coco
        path = write_shapes_coco(args.out, num_images=args.num_images, seed=args.seed,
                                 image_size=tuple(args.image_size))
        print(f"wrote {args.num_images} images to {args.out} ({path})")
    elif args.command == "cityscapes-to-coco":
        from .data.cityscapes import cityscapes_to_coco
        cityscapes_to_coco(args.root, args.out_json, args.split)
        print(f"wrote {args.out_json}")
    elif args.command == "check-data":
        check_data_main(args.config, opts, args.split, args.out)
    elif args.command == "labelme-to-coco":
        labelme_to_coco_main(args.folder, args.out_json, args.image_root)
    elif args.command == "export":
        _export(args, opts)
    elif args.command == "convert":
        from .convert import convert_checkpoint
        convert_checkpoint(args.input, args.output, args.source)
        print(f"wrote {args.output}")
    elif args.command == "benchmark":
        from .benchmark import run_from_args
        if run_from_args(args) != 0:
            raise SystemExit(2)


def _export(args, opts=None) -> None:
    from .checkpoint_config import resolve_model
    from .export import export_onnx, export_torchscript
    from .predictor import load_model
    resolved = resolve_model(args.config, args.checkpoint, opts)
    model, _ = load_model(resolved.cfg, resolved.ckpt, name=resolved.checkpoint)
    size = tuple(args.input_size) if args.input_size else None
    if args.format == "onnx":
        export_onnx(model, args.out, input_size=size, dynamic=args.dynamic, with_postprocess=args.with_postprocess,
                    class_names=resolved.classes)
    else:
        export_torchscript(model, args.out, input_size=size, with_postprocess=args.with_postprocess,
                           class_names=resolved.classes)
    print(f"wrote {args.out}")


def one_line(exc: BaseException) -> str:
    """The last meaningful line of an error, also when it was re-raised from a worker process."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    text = lines[-1] if lines else type(exc).__name__
    return text


def resume_command(command: list[str], flags: tuple[str, ...], checkpoint: str) -> str:
    """``command`` (program and arguments, as typed) without its resume option (any of ``flags``, with its
    value) and with ``flags[0] checkpoint`` added: the line that continues an interrupted run."""
    kept, i = [], 0
    while i < len(command):
        arg = command[i]
        if arg in flags:  # "--resume" (whose value is optional) or "--resume_from PATH"
            i += 2 if i + 1 < len(command) and not command[i + 1].startswith("-") else 1
            continue
        if not any(arg.startswith(f + "=") for f in flags):
            kept.append(arg)
        i += 1
    return shlex.join(kept + [flags[0], checkpoint])


def main(argv: list[str] | None = None, resume_hint=None) -> int:
    """``resume_hint(checkpoint) -> str``: the command that resumes an interrupted training (default: this
    ``solov2 train`` command with ``--resume checkpoint``)."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    from .config import ConfigError
    from .engine.checkpoint import CheckpointError
    from .engine.interrupt import TrainingInterrupted
    from .engine.trainer import TrainingError
    # Errors about the user's input (DataError, ExportError, ... are ValueErrors); anything else is a bug
    # and keeps its traceback.
    expected = (ConfigError, CheckpointError, FileNotFoundError, ValueError, TrainingError)
    try:
        run(args)
    except TrainingInterrupted as exc:
        if os.environ.get("RANK", "0") == "0":  # under torchrun every process stops; rank 0 says so
            hint = resume_hint or (lambda ckpt: resume_command(["solov2", *argv], ("--resume",), ckpt))
            if exc.iteration is None:
                print("interrupted before the first checkpoint", file=sys.stderr)
            elif args.command == "train":
                print(f"interrupted at iteration {exc.iteration}; resume with: {hint(exc.checkpoint)}",
                      file=sys.stderr)
            else:
                print(f"interrupted: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except expected as exc:
        if os.environ.get("SOLOV2_DEBUG"):
            raise
        print(f"error: {one_line(exc)}", file=sys.stderr)  # SOLOV2_DEBUG=1 shows the traceback
        return 1
    except Exception as exc:
        # --gpus N: a worker's error arrives as its traceback text; an expected one is shown as one line too.
        message = worker_error(exc, expected)
        if message is None or os.environ.get("SOLOV2_DEBUG"):
            raise
        print(f"error: {message}", file=sys.stderr)
        return 1
    return 0


def worker_error(exc: BaseException, expected: tuple[type, ...]) -> str | None:
    """The message of an error of type ``expected`` raised in a spawned worker process (``exc`` is
    ``torch.multiprocessing``'s ``ProcessRaisedException``, whose text ends with ``module.Type: message``);
    None for anything else."""
    import importlib
    from torch.multiprocessing import ProcessRaisedException
    if not isinstance(exc, ProcessRaisedException):
        return None
    last = one_line(exc)
    qualified, _, message = last.partition(": ")
    module, _, name = qualified.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module or "builtins"), name)
    except (ImportError, AttributeError, ValueError):
        return None
    return message if isinstance(cls, type) and issubclass(cls, expected) and message else None


if __name__ == "__main__":
    sys.exit(main())

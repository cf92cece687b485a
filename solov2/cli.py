"""The ``solov2`` command: train, eval, predict, demo, data tools, export, convert, benchmark."""
from __future__ import annotations

import argparse
import glob
import json
import logging
import os
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
        du.spawn(_spawned_worker, gpus, (gpus, opts))
        return _read_metrics(work_dir)
    return _train_worker(0, 1, opts)


def _spawned_worker(rank: int, world: int, opts: dict) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    if opts["device"] == "cpu":
        # N processes x the default thread count oversubscribe the cores, and OpenMP then slows to a crawl.
        import torch
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    _train_worker(rank, world, opts)


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
    from .data import build_dataset
    from .engine.evaluate import evaluate, inference_on_dataset
    from .predictor import autocast_dtype, load_model, precision_autocast
    resolved = resolve_model(config, checkpoint, cfg_options)
    cfg = resolved.cfg
    device = device or _default_device()
    dtype = autocast_dtype(precision, device)
    model, _ = load_model(cfg, resolved.ckpt, device, optimize, name=checkpoint)
    split = split if split in cfg.data else "val"
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
    found = []
    for item in inputs:
        if os.path.isdir(item):
            files = [str(p) for p in sorted(Path(item).rglob("*")) if p.suffix.lower() in IMAGE_EXTS | VIDEO_EXTS]
            if not files:
                raise ValueError(f"{item}: folder has no images or videos")
            found += files
        elif os.path.isfile(item):
            found.append(item)
        else:
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise ValueError(f"{item}: no such file, folder or glob match")
            found += [m for m in matches if os.path.isfile(m)]
    return found


def predict_main(config: str | None, checkpoint: str, inputs: list[str], out: str = "runs/predict",
                 score_thr: float = 0.3, device: str | None = None, save_json: bool = True,
                 save_masks: bool = False, precision: str = "fp32", optimize: bool = True) -> list[str]:
    from tqdm import tqdm
    from .evaluation.coco import results_to_coco
    from .predictor import Predictor, read_image
    from .visualize import save_image
    paths = collect_inputs(inputs)
    predictor = Predictor(config, checkpoint, device=device or _default_device(), score_thr=score_thr,
                          precision=precision, optimize=optimize)
    os.makedirs(out, exist_ok=True)
    written, coco = [], []
    for i, path in enumerate(tqdm(paths, desc="predict", dynamic_ncols=True)):
        stem = Path(path).stem
        if Path(path).suffix.lower() in VIDEO_EXTS:
            written.append(_predict_video(predictor, path, os.path.join(out, f"{stem}_pred.mp4")))
            continue
        image = read_image(path)
        result = predictor(image)
        target = os.path.join(out, f"{stem}_pred.png")
        save_image(target, predictor.draw(image, result))
        written.append(target)
        if save_masks:
            _save_masks(result, os.path.join(out, f"{stem}_masks"))
        # The training data's category ids where the checkpoint records them, else the labels.
        cat_ids = predictor.cat_ids or list(range(len(predictor.class_names)))
        for r, name in zip(results_to_coco(result, i, cat_ids), result["class_names"]):
            coco.append({**r, "file_name": path, "category_name": name})
    if save_json:
        with open(os.path.join(out, "results.json"), "w") as f:
            json.dump(coco, f)
    return written


def _save_masks(result: dict, folder: str) -> None:
    from PIL import Image
    os.makedirs(folder, exist_ok=True)
    for k, (mask, name, score) in enumerate(zip(result["masks"], result["class_names"], result["scores"])):
        Image.fromarray(mask.astype("uint8") * 255).save(os.path.join(folder, f"{k:03d}_{name}_{score:.2f}.png"))


def _predict_video(predictor, path: str, target: str) -> str:
    import cv2
    from tqdm import tqdm
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise ValueError(f"{path}: cannot open video")
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    writer = None
    with tqdm(total=frames, desc=os.path.basename(path), unit="frame", dynamic_ncols=True, leave=False) as bar:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            drawn = predictor.draw(rgb, predictor(rgb))
            if writer is None:
                h, w = drawn.shape[:2]  # pictures of small frames are enlarged
                writer = cv2.VideoWriter(target, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
            writer.write(cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
            bar.update(1)
    cap.release()
    if writer is None:
        raise ValueError(f"{path}: video has no readable frames")
    writer.release()
    return target


# ----------------------------------------------------------------------------- demo
def demo_main(out: str = "runs/demo", train_images: int = 1000, val_images: int = 100, image_size: int = 128,
              cfg_options=None) -> dict:
    """Built-in data -> train a small SOLOv2 on CPU -> mask AP on the val split -> pictures in ``out``."""
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
    metrics = train_main(config, work_dir=out, cfg_options=options, device="cpu")
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
                   help="data set of the config to evaluate on (default val, as training does; tools/test.py: test)")
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
    pr.add_argument("--save-json", action="store_true", default=True,
                    help="write results.json (COCO results, RLE masks); on by default")
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

    m = sub.add_parser("make-shapes", help="write the built-in synthetic data set as a COCO folder")
    m.add_argument("out")
    m.add_argument("--num-images", type=int, default=200)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--image-size", type=int, nargs=2, default=[256, 256], metavar=("H", "W"))

    c = sub.add_parser("cityscapes-to-coco", help="convert Cityscapes polygons to a COCO instance JSON")
    c.add_argument("root")
    c.add_argument("out_json")
    c.add_argument("--split", default="train")

    x = sub.add_parser("export", help="export to ONNX or TorchScript")
    x.add_argument("sources", nargs="+", metavar="[CONFIG.py] CHECKPOINT", help=FROM_CHECKPOINT)
    x.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    x.add_argument("--out", required=True)
    x.add_argument("--input-size", type=int, nargs=2, default=[448, 768], metavar=("H", "W"))
    x.add_argument("--dynamic", action="store_true")
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
                               args.save_json, args.save_masks, args.precision, args.optimize)
        print(f"wrote {len(written)} result(s) to {args.out}")
    elif args.command == "demo":
        demo_main(args.out, args.train_images, args.val_images, args.image_size, opts)
    elif args.command == "make-shapes":
        from .data.synthetic import write_shapes_coco
        path = write_shapes_coco(args.out, num_images=args.num_images, seed=args.seed,
                                 image_size=tuple(args.image_size))
        print(f"wrote {args.num_images} images to {args.out} ({path})")
    elif args.command == "cityscapes-to-coco":
        from .data.cityscapes import cityscapes_to_coco
        cityscapes_to_coco(args.root, args.out_json, args.split)
        print(f"wrote {args.out_json}")
    elif args.command == "export":
        _export(args)
    elif args.command == "convert":
        from .convert import convert_checkpoint
        convert_checkpoint(args.input, args.output, args.source)
        print(f"wrote {args.output}")
    elif args.command == "benchmark":
        from .benchmark import run_from_args
        if run_from_args(args) != 0:
            raise SystemExit(2)


def _export(args) -> None:
    from .checkpoint_config import resolve_model
    from .export import export_onnx, export_torchscript
    from .predictor import load_model
    resolved = resolve_model(args.config, args.checkpoint)
    model, _ = load_model(resolved.cfg, resolved.ckpt, name=resolved.checkpoint)
    if args.format == "onnx":
        export_onnx(model, args.out, input_size=tuple(args.input_size), dynamic=args.dynamic,
                    with_postprocess=args.with_postprocess)
    else:
        export_torchscript(model, args.out, input_size=tuple(args.input_size),
                           with_postprocess=args.with_postprocess)
    print(f"wrote {args.out}")


def one_line(exc: BaseException) -> str:
    """The last meaningful line of an error, also when it was re-raised from a worker process."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    text = lines[-1] if lines else type(exc).__name__
    return text


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .config import ConfigError
    from .engine.checkpoint import CheckpointError
    from .engine.trainer import TrainingError
    # Errors about the user's input (DataError, ExportError, ... are ValueErrors); anything else is a bug
    # and keeps its traceback.
    expected = (ConfigError, CheckpointError, FileNotFoundError, ValueError, TrainingError)
    try:
        run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except expected as exc:
        if os.environ.get("SOLOV2_DEBUG"):
            raise
        print(f"error: {one_line(exc)}", file=sys.stderr)  # SOLOV2_DEBUG=1 shows the traceback
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

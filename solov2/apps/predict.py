"""``solov2 predict``: images, folders, globs and videos -> pictures, ``results.json`` (COCO results) and
optionally one PNG per instance; the outputs mirror the inputs' paths."""
from __future__ import annotations

import argparse
import glob
import itertools
import json
import os
import posixpath
import sys
from pathlib import Path

from solov2.data.image import IMAGE_EXTS
from solov2.engine.launch import resolve_device
from solov2.errors import one_line

__all__ = ["add_arguments", "main", "predict_main", "collect_inputs", "collect_named_inputs", "VIDEO_EXTS"]

VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm"}
LEGIBLE_SIDE = 256  # pictures of images with a shorter side below it are enlarged, so captions stay legible


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
                 save_masks: bool = False, precision: str = "auto", optimize: bool = True,
                 ann_file: str | None = None, backend: str = "torch", boxes: bool = False, tile: int | None = None,
                 overlap: int | None = None) -> list[str]:
    """Pictures (``OUT/<name>_pred.png``, ``<name>`` from :func:`collect_named_inputs`), videos
    (``OUT/<name>_pred.mp4``) and ``OUT/results.json``. Unreadable inputs are skipped with a one-line
    warning and listed at the end; if none can be read, a ``ValueError`` says why.
    ``results.json`` ids: see :class:`_ResultIds`. ``checkpoint`` may be an exported ``.onnx`` / ``.xml`` file,
    run in its own runtime; ``backend``: as :class:`~solov2.inference.predictor.Predictor`'s. ``boxes``: draw each
    instance's box; ``tile``: predict images in overlapping ``tile`` x ``tile`` tiles (``overlap`` pixels, default
    ``tile // 4``; :meth:`~solov2.inference.predictor.Predictor.predict_tiled`)."""
    from tqdm import tqdm

    from solov2.data.image import read_rgb as read_image
    from solov2.errors import DataError
    from solov2.evaluation.coco import results_to_coco
    from solov2.inference.predictor import Predictor
    from solov2.inference.visualize import save_image
    named = collect_named_inputs(inputs)
    predictor = Predictor(config, checkpoint, device=resolve_device(device), score_thr=score_thr,
                          precision=precision, optimize=optimize, backend=backend)
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
        result = predictor(image) if tile is None else predictor.predict_tiled(image, tile, overlap)
        save_image(f"{target}_pred.png", predictor.draw(image, result, min_side=LEGIBLE_SIDE, boxes=boxes))
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
            from solov2.errors import DataError
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

    from solov2.errors import DataError
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
            drawn = predictor.draw(rgb, result, min_side=LEGIBLE_SIDE)
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from solov2.apps.arguments import add_backend, add_device, add_optimize, add_precision, add_sources
    add_sources(parser, inputs="images, folders, globs or videos")
    parser.add_argument("--out", default="runs/predict", help="output folder")
    parser.add_argument("--score-thr", type=float, default=0.3, help="instances scoring below this are not kept")
    add_device(parser)
    parser.add_argument("--save-json", action=argparse.BooleanOptionalAction, default=True,
                        help="write results.json")
    parser.add_argument("--ann", metavar="FILE.json", help="COCO file whose image ids results.json uses (by "
                        "file_name)")
    parser.add_argument("--save-masks", action="store_true", help="one PNG per instance")
    add_precision(parser)
    add_optimize(parser)
    add_backend(parser)
    parser.add_argument("--boxes", action="store_true", help="draw each instance's box too")
    parser.add_argument("--tile", type=int, metavar="SIZE", help="big images: predict overlapping SIZE x SIZE tiles "
                        "at full resolution (about the test scale), detections cut by tile borders merged")
    parser.add_argument("--overlap", type=int, metavar="PX", help="pixels neighbouring tiles share (default: SIZE/4)")


def main(args: argparse.Namespace) -> None:
    from solov2.apps.arguments import split_args_sources
    split_args_sources(args, "predict", inputs=True)
    written = predict_main(args.config, args.checkpoint, args.inputs, args.out, args.score_thr, args.device,
                           args.save_json, args.save_masks, args.precision, args.optimize, args.ann, args.backend,
                           boxes=args.boxes, tile=args.tile, overlap=args.overlap)
    print(f"wrote {len(written)} picture(s) to {args.out}")

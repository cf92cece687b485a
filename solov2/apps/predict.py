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
from solov2.errors import DataError, one_line

__all__ = ["add_arguments", "main", "predict_main", "PredictOutputs", "collect_inputs", "collect_named_inputs",
           "VIDEO_EXTS", "slugify"]

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


class PredictOutputs(list):
    """What :func:`predict_main` wrote: the pictures and videos (as a list of paths), and ``instances``: how
    many instances ``results.json`` holds (0 without it); ``skipped_existing``: inputs already done
    (``skip_existing``)."""

    instances: int = 0
    skipped_existing: int = 0


def predict_main(config: str | None, checkpoint: str, inputs: list[str], out: str = "runs/predict",
                 score_thr: float = 0.3, device: str | None = None, save_json: bool = True,
                 save_masks: bool = False, precision: str = "auto", optimize: bool = True,
                 ann_file: str | None = None, backend: str = "torch", boxes: bool = False, tile: int | None = None,
                 overlap: int | None = None, skip_existing: bool = False) -> PredictOutputs:
    """Pictures (``OUT/<name>_pred.png``, ``<name>`` from :func:`collect_named_inputs`), videos
    (``OUT/<name>_pred.mp4``) and ``OUT/results.json``. Unreadable inputs are skipped with a one-line
    warning and listed at the end; if none can be read, a ``ValueError`` says why.
    ``results.json`` ids: see :class:`_ResultIds`. ``checkpoint`` may be an exported ``.onnx`` / ``.xml`` file,
    run in its own runtime; ``backend``: as :class:`~solov2.inference.predictor.Predictor`'s. ``boxes``: draw each
    instance's box; ``tile``: predict images in overlapping ``tile`` x ``tile`` tiles (``overlap`` pixels, default
    ``tile // 4``; :meth:`~solov2.inference.predictor.Predictor.predict_tiled`).

    Built for big folders: a thread reads the next images while the model runs; each input's results go to
    ``OUT/results_log.jsonl`` as soon as it is done (memory stays flat), and ``results.json`` is written from
    that log at the end. ``skip_existing``: leave out the inputs a previous run into ``OUT`` finished (their
    picture exists and, with ``save_json``, the log has them), so a stopped run resumes where it stopped.
    """
    from tqdm import tqdm

    from solov2.evaluation.coco import results_to_coco
    from solov2.inference.predictor import Predictor
    from solov2.inference.visualize import save_image
    named = collect_named_inputs(inputs)
    predictor = Predictor(config, checkpoint, device=resolve_device(device), score_thr=score_thr,
                          precision=precision, optimize=optimize, backend=backend)
    os.makedirs(out, exist_ok=True)
    ids = _ResultIds(predictor, ann_file)
    log = _ResultsLog(os.path.join(out, "results_log.jsonl"), resume=skip_existing) if save_json else None
    todo = []
    for position, (path, name) in enumerate(named, start=1):
        target = os.path.join(out, name)
        picture = f"{target}_pred.mp4" if Path(path).suffix.lower() in VIDEO_EXTS else f"{target}_pred.png"
        if skip_existing and os.path.isfile(picture) and (log is None or name in log.done):
            continue
        todo.append((position, path, name, target))
    outputs = PredictOutputs()
    outputs.skipped_existing = len(named) - len(todo)
    skipped = []

    def video(path: str, name: str, target: str) -> None:
        def on_frame(k, result):
            if log is not None:
                log.write(name, [{**r, "file_name": f"{path}#{k}", "frame": k,
                                  "category_name": ids.category_name(r["category_id"])}
                                 for r in results_to_coco(result, k, ids.cat_ids)], done=False)
        outputs.append(_predict_video(predictor, path, f"{target}_pred.mp4", on_frame))
        if log is not None:
            log.write(name, [], done=True)

    def picture(position: int, path: str, name: str, target: str, image) -> None:
        result = predictor(image) if tile is None else predictor.predict_tiled(image, tile, overlap)
        if save_masks:
            _save_masks(result, f"{target}_masks")
        # after the masks: the picture marks the input done
        save_image(f"{target}_pred.png", predictor.draw(image, result, min_side=LEGIBLE_SIDE, boxes=boxes))
        outputs.append(f"{target}_pred.png")
        if log is not None:
            image_id = ids.image_id(path, name, position)
            log.write(name, [] if image_id is None else [
                {**r, "image_id": image_id, "file_name": path, "category_name": ids.category_name(r["category_id"])}
                for r in results_to_coco(result, 0, ids.cat_ids)], done=True)

    with tqdm(total=len(named), initial=outputs.skipped_existing, desc="predict", unit="img",
              dynamic_ncols=True) as bar, _Prefetch(todo) as loaded:
        for (position, path, name, target), image, error in loaded:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            try:
                if error is not None:
                    raise error
                if image is None:
                    video(path, name, target)
                else:
                    picture(position, path, name, target, image)
            except DataError as exc:
                tqdm.write(f"warning: {one_line(exc)}; skipped", file=sys.stderr)
                skipped.append((path, one_line(exc)))
            bar.update(1)
    if skipped and not outputs and not outputs.skipped_existing:
        raise ValueError(skipped[0][1] if len(skipped) == 1 else
                         f"none of the {len(skipped)} inputs could be read (first: {skipped[0][1]})")
    if log is not None:
        outputs.instances = log.finish(os.path.join(out, "results.json"))
        if outputs.instances == 0:
            why = (f"; pycocotools' COCO.loadRes cannot load an empty list (it needs at least one result), so "
                   f"there is nothing to evaluate against {ann_file}" if ann_file else "")
            print(f"no instances found (score threshold {score_thr:g}): {os.path.join(out, 'results.json')} holds an "
                  f"empty list{why}; a lower --score-thr may find some", file=sys.stderr)
    if skipped:
        print(f"skipped {len(skipped)} unreadable input(s): {', '.join(p for p, _ in skipped)}", file=sys.stderr)
    return outputs


class _Prefetch:
    """Reads the images of ``items`` (``(position, path, name, target)``) in a background thread, a few ahead
    of the model (image decoding releases the GIL). Iterating yields ``(item, image, error)``: ``image`` is
    ``(H, W, 3)`` uint8 RGB, or None for a video (read by the caller); ``error`` a DataError or None."""

    def __init__(self, items: list, ahead: int = 4):
        import queue
        import threading
        self.items, self.queue = items, queue.Queue(maxsize=ahead)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="predict-loader", daemon=True)

    def _run(self) -> None:
        import queue

        from solov2.data.image import read_rgb
        for item in self.items:
            image = error = None
            if Path(item[1]).suffix.lower() not in VIDEO_EXTS:
                try:
                    image = read_rgb(item[1])
                except DataError as exc:
                    error = exc
            while not self.stop.is_set():
                try:
                    self.queue.put((item, image, error), timeout=0.1)
                    break
                except queue.Full:  # the model is behind: wait, unless told to stop
                    continue
            if self.stop.is_set():
                return

    def __enter__(self):
        self.thread.start()
        return self

    def __iter__(self):
        for _ in self.items:
            yield self.queue.get()

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


class _ResultsLog:
    """``results_log.jsonl``: one line per finished input (``{"name", "run", "done", "entries"}``; a video
    writes a line per frame, then its ``done`` line), appended and flushed as each input finishes, so a
    stopped run loses nothing it finished. :meth:`finish` writes ``results.json`` (a JSON list of the entries
    of every finished input, the latest run's for an input done twice) from it, streaming."""

    def __init__(self, path: str, resume: bool):
        self.path = path
        self.done: dict[str, int] = {}  # name -> run that finished it
        self.run = 0
        if resume and os.path.isfile(path):
            for line in self._lines():
                self.run = max(self.run, line["run"] + 1)
                if line.get("done"):
                    self.done[line["name"]] = line["run"]
        elif os.path.exists(path):
            os.remove(path)
        self.file = open(path, "a", encoding="utf-8")

    def _lines(self):
        with open(self.path, encoding="utf-8") as f:
            for text in f:
                try:
                    yield json.loads(text)
                except ValueError:  # the last line of a run killed while writing it
                    continue

    def write(self, name: str, entries: list[dict], done: bool) -> None:
        self.file.write(json.dumps({"name": name, "run": self.run, "done": done, "entries": entries}) + "\n")
        self.file.flush()
        if done:
            self.done[name] = self.run

    def finish(self, results_json: str) -> int:
        """Write ``results_json``; returns the number of instances in it."""
        self.file.close()
        count = 0
        with open(results_json + ".part", "w", encoding="utf-8") as f:
            f.write("[")
            for line in self._lines():
                if self.done.get(line["name"]) != line["run"]:
                    continue  # an unfinished attempt, or one a later run redid
                for entry in line["entries"]:
                    f.write(("," if count else "") + json.dumps(entry))
                    count += 1
            f.write("]")
        os.replace(results_json + ".part", results_json)
        return count


class _ResultIds:
    """The ids ``results.json`` uses, so that ``COCO.loadRes`` takes it against the user's annotations.

    * ``category_id``: the training data's category ids (``predictor.cat_ids``, from the checkpoint); for a
      checkpoint without them, the ``--ann`` file's sorted category ids if it has one per class, else 1..C
      (label + 1, as ``labelme-to-coco`` and most COCO files number them).
    * ``image_id``: with ``--ann FILE.json``, the id of the image whose ``file_name`` the input path ends with
      (images not in the file are warned about and left out of ``results.json``); without it, the input's
      position (1-based) among all inputs found, so that a resumed run (``--skip-existing``) numbers alike.
      Video frames: the frame index (0-based), ``file_name`` = ``VIDEO#FRAME``.
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

    def category_name(self, category_id: int) -> str:
        return self.name_of[category_id]

    def image_id(self, path: str, name: str, position: int):
        if self.by_file is None:
            return position
        posix = Path(os.path.abspath(path)).as_posix()
        matches = [(fn, i) for fn, i in self.by_file.get(posixpath.basename(posix), [])
                   if posix == fn or posix.endswith("/" + fn)]
        if not matches:
            from tqdm import tqdm
            tqdm.write(f"warning: {path}: not among the images of --ann; its results are not in results.json",
                       file=sys.stderr)
            return None
        return max(matches, key=lambda m: len(m[0]))[1]  # the longest file_name the path ends with


def slugify(name: str) -> str:
    """A class name as a safe file name part: ASCII letters, digits, ``-`` and ``_`` (accents dropped, anything
    else ``_``); ``"class"`` if nothing is left (``"traffic light"`` -> ``traffic_light``, ``"café"`` -> ``cafe``)."""
    import re
    import unicodedata
    ascii_name = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", ascii_name).strip("_")
    return slug or "class"


def _save_masks(result: dict, folder: str) -> None:
    from PIL import Image
    os.makedirs(folder, exist_ok=True)
    for k, (mask, name, score) in enumerate(zip(result["masks"], result["class_names"], result["scores"])):
        Image.fromarray(mask.astype("uint8") * 255).save(
            os.path.join(folder, f"{k:03d}_{slugify(name)}_{score:.2f}.png"))


def _predict_video(predictor, path: str, target: str, on_frame=None) -> str:
    """``target``: the annotated video; ``on_frame(index, result)`` is called for every frame if given."""
    import cv2
    from tqdm import tqdm

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
    parser.add_argument("--skip-existing", action="store_true",
                        help="resume a stopped run into the same --out: skip the inputs it finished")


def main(args: argparse.Namespace) -> None:
    from solov2.apps.arguments import split_args_sources
    split_args_sources(args, "predict", inputs=True)
    written = predict_main(args.config, args.checkpoint, args.inputs, args.out, args.score_thr, args.device,
                           args.save_json, args.save_masks, args.precision, args.optimize, args.ann, args.backend,
                           boxes=args.boxes, tile=args.tile, overlap=args.overlap, skip_existing=args.skip_existing)
    print(f"wrote {len(written)} picture(s)/video(s)"
          + (f" and {written.instances} instance(s) in results.json" if args.save_json else "") + f" to {args.out}"
          + (f" ({written.skipped_existing} input(s) done before, skipped)" if written.skipped_existing else ""))

"""The exported graph's contract, in one place: its input and output names, the metadata it carries and how
that is read and written, and which runtime runs which file.

The whole contract (pre-processing, inputs, outputs, post-processing) for a program in any language is in
docs/deployment.md; :mod:`solov2.deploy.export` writes such files and :mod:`solov2.deploy.runtime` runs them.
"""
from __future__ import annotations

import json
import os
from typing import Any

from solov2.errors import ExportError

__all__ = ["INPUT_NAMES", "OUTPUT_NAMES", "POSTPROCESSED_NAMES", "META_KEY", "FORMAT_VERSION", "RUNTIMES", "EXTRAS",
           "metadata_props", "parse_meta", "runtime_of", "is_exported", "is_torchscript", "missing_extra"]

INPUT_NAMES = ["input", "image_size"]
OUTPUT_NAMES = ["cate_scores", "kernels", "mask_feat"]
POSTPROCESSED_NAMES = ["scores", "labels", "mask_probs"]
META_KEY = "solov2"
# 2: the graph takes image_size and crops to the image's own padded region (1 took the input alone).
FORMAT_VERSION = 2
# The runtime that runs each exported file type (by suffix; a TorchScript file, any suffix, runs in torch), and
# the pip extra that installs it (with onnx, which exporting to either needs: the IR is converted from the ONNX).
RUNTIMES = {".onnx": "onnxruntime", ".xml": "openvino"}
EXTRAS = {"onnxruntime": "onnx", "openvino": "openvino"}


def metadata_props(meta: dict[str, Any]) -> dict[str, str]:
    """The file's string key/value metadata (ONNX ``metadata_props``, OpenVINO ``rt_info``, TorchScript extra
    files): everything under ``solov2`` as JSON, and what a deployer reads most (class names, thresholds) under
    keys of their own."""
    props = {META_KEY: json.dumps(meta), "score_thr": str(meta["test_cfg"]["score_thr"]),
             "mask_thr": str(meta["test_cfg"]["mask_thr"])}
    if meta.get("class_names") is not None:
        props["class_names"] = json.dumps(meta["class_names"])
    return props


def parse_meta(path: str, text: str | bytes | None) -> dict[str, Any]:
    """The ``solov2`` metadata JSON of an exported file; a one-line :class:`ExportError` if it is missing, not
    ours or of another format version."""
    if not text:
        raise ExportError(f"{path}: no SOLOv2 metadata in the file (not written by solov2.deploy.export?)")
    try:
        meta = json.loads(text)
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or "format_version" not in meta:
        raise ExportError(f"{path}: its 'solov2' metadata is not a SOLOv2 export's "
                          f"(not written by solov2.deploy.export?)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ExportError(f"{path}: export format version {meta.get('format_version')}, "
                          f"this code reads {FORMAT_VERSION}; export the checkpoint again")
    return meta


def is_torchscript(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a TorchScript archive (``torch.jit.save``: a zip with the module's ``code/``), as opposed
    to a checkpoint (``torch.save``: a zip of pickled tensors, no code), whatever its suffix."""
    import zipfile
    try:
        with zipfile.ZipFile(os.fspath(path)) as archive:
            return any("/code/" in name for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def runtime_of(path: str | os.PathLike) -> str:
    """The runtime that runs an exported file: ``"onnxruntime"`` (.onnx), ``"openvino"`` (.xml), else
    ``"torchscript"`` (run by torch)."""
    return RUNTIMES.get(os.path.splitext(os.fspath(path))[1].lower(), "torchscript")


def is_exported(path: str | os.PathLike) -> bool:
    """Whether ``path`` names an exported file rather than a checkpoint: ONNX / OpenVINO by suffix, TorchScript by
    its contents (:func:`is_torchscript`)."""
    return os.path.splitext(os.fspath(path))[1].lower() in RUNTIMES or is_torchscript(path)


def missing_extra(runtime: str, exporting: bool = False) -> str | None:
    """None if ``runtime`` (and with ``exporting``, onnx) is installed, else what is missing and the pip extra
    that installs it: ``"needs openvino: pip install 'solov2[openvino]'"``."""
    import importlib.util
    packages = (["onnx"] if exporting else []) + [runtime]
    missing = [m for m in packages if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    return f"needs {' and '.join(missing)}: pip install 'solov2[{EXTRAS[runtime]}]'"

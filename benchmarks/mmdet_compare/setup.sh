#!/usr/bin/env bash
# Create a separate virtual environment with MMDetection 3.3.0 for benchmarks/mmdet_compare/run_mmdet.py.
#
#   bash benchmarks/mmdet_compare/setup.sh [VENV_DIR]      (default /tmp/mmdet-venv)
#   WHEELS=DIR bash benchmarks/mmdet_compare/setup.sh      (offline, e.g. a lent GPU machine: pip installs only
#                                                          from DIR, and what SOLOV2_PY's site-packages has)
#
# * mmcv-lite 2.1.0 instead of mmcv: the full mmcv 2.1 has no wheel on PyPI for recent torch and its source
#   build fails; SOLOv2 without DCN uses no compiled mmcv op, and mmcv-lite installs as the `mmcv` package
#   (version 2.1.0, inside mmdet 3.3's accepted range >=2.0.0rc4,<2.2.0).
# * The same torch as ours: instead of downloading torch again, a .pth file appends the solov2 venv's
#   site-packages to sys.path, so torch/torchvision (and anything not installed here) come from there, while
#   packages installed in this venv take precedence.
set -euo pipefail

VENV=${1:-/tmp/mmdet-venv}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SOLOV2_PY=${SOLOV2_PY:-$REPO/.venv/bin/python}

BASE_PY=$("$SOLOV2_PY" -c 'import sys; print(sys._base_executable)')
SOLOV2_SITE=$("$SOLOV2_PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

"$BASE_PY" -m venv "$VENV"
VENV_SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$SOLOV2_SITE" > "$VENV_SITE/zz_solov2_torch.pth"   # appended after this venv's own site-packages

if [[ -n "${WHEELS:-}" ]]; then
  "$VENV/bin/pip" install --no-index --find-links "$WHEELS" "mmdet==3.3.0" "mmcv-lite==2.1.0" "mmengine>=0.7.1,<1.0.0"
else
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install "mmdet==3.3.0" "mmcv-lite==2.1.0" "mmengine>=0.7.1,<1.0.0"
fi

# mmcv-lite ships mmcv/ops/*.py but not the compiled mmcv._ext they load at import time, and mmdet imports
# mmcv.ops (roi_align, in mmdet.structures.mask) on `import mmdet.structures`. This stub makes those imports
# work; every function in it raises if called, so an op SOLOv2 needed could never be silently skipped.
MMCV_DIR=$("$VENV/bin/python" -c 'import importlib.util as u; print(u.find_spec("mmcv").submodule_search_locations[0])')
cat > "$MMCV_DIR/_ext.py" <<'STUB'
"""Stub of mmcv's compiled ops (written by solov2 benchmarks/mmdet_compare/setup.sh): calling one raises."""


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)

    def missing(*args, **kwargs):
        raise NotImplementedError(f"mmcv._ext.{name}: compiled mmcv op not available in mmcv-lite")
    return missing
STUB

"$VENV/bin/python" - <<'PY'
import mmcv, mmdet, mmengine, torch
from mmdet.utils import register_all_modules
register_all_modules()  # imports mmdet.models / mmdet.structures, i.e. mmcv.ops
print(f"torch {torch.__version__} ({torch.__file__})")
print(f"mmdet {mmdet.__version__}, mmcv(-lite) {mmcv.__version__}, mmengine {mmengine.__version__}")
PY

#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one run (about 5 minutes on one H200): the demo trained and evaluated on
# the GPU, the Cityscapes training command on one GPU (fp32 and --amp) and its one-line refusal of --gpus 2 there,
# latency of the seed network (fp32 / fp16 / bf16) and of the DCN model, and the Predictor's CUDA results
# against the CPU's on the demo model. Each step prints what it measured; the logs go to $1 (default
# runs/cuda_check).
#
#     bash benchmarks/cuda_check.sh [OUT_DIR]          # STEPS="2 3" runs only those steps (4 needs 1's model)
#
# Step 5, the seed network beside MMDetection 3.3 on the same GPU (batch 1 and 8, fp32 and fp16), needs an
# interpreter with MMDetection: MMDET_PY (default /tmp/mmdet-venv/bin/python, made by
# `SOLOV2_PY=python3 WHEELS=<carried wheels> bash benchmarks/mmdet_compare/setup.sh`); without one it says so
# and is skipped.
set -u
want() { [[ " ${STEPS:-1 2 3 4 5} " == *" $1 "* ]]; }
OUT_DIR=${1:-runs/cuda_check}
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
SEED=configs/solov2/cityscapes/solov2_light_448_r50_fpn_2gpu_3x.py
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"

if want 1; then
echo "== 1. solov2 demo --device cuda (the README's demo, trained and evaluated on the GPU)"
start=$(date +%s)
timeout 300 $PY -m solov2.cli demo --device cuda --out runs/cuda_demo > "$OUT_DIR/demo.log" 2>&1
echo "exit $? after $(( $(date +%s) - start )) s"
grep -E "^demo:|Error|rror:" "$OUT_DIR/demo.log" | tail -5
grep -E "iter +1700|iter +100/" runs/cuda_demo/train.log | cut -c1-160

fi

if want 2; then
echo "== 2. the Cityscapes command on one GPU (tiny Cityscapes tree; the config's own train scales)"
# The test tree's 2 train images with instances, copied 32 times: an epoch of 32 iterations (one epoch per
# iteration would time the data loader's start).
$PY - <<'EOF'
import shutil, sys
from pathlib import Path
sys.path.insert(0, "tests")
from cityscapes_fixture import make_tiny_cityscapes
root = make_tiny_cityscapes(Path("runs/tiny_cityscapes"))
for ann in sorted((root / "gtFine/train").glob("*/*_gtFine_polygons.json")):
    stem = ann.name[: -len("_gtFine_polygons.json")]
    image = root / "leftImg8bit/train" / ann.parent.name / f"{stem}_leftImg8bit.png"
    city, seq, frame = stem.split("_")
    for i in range(1, 32):
        copy = f"{city}_{int(seq) + 1000 * i:06d}_{frame}"
        shutil.copy(ann, ann.with_name(f"{copy}_gtFine_polygons.json"))
        shutil.copy(image, image.with_name(f"{copy}_leftImg8bit.png"))
EOF
CS="data.train.root=runs/tiny_cityscapes data.val.root=runs/tiny_cityscapes data.test.root=runs/tiny_cityscapes"
for amp in --no-amp --amp; do
  timeout 150 $PY tools/train.py $SEED --gpus 1 --work_dir runs/seed_gpu$amp $amp --cfg-options $CS \
    max_iters=100 total_epochs=5 log_config.interval=20 evaluation.interval=-1 model.pretrained=None data.workers_per_gpu=4 \
    > "$OUT_DIR/seed$amp.log" 2>&1
  echo "$amp exit $?"; grep -E "iter +(20|40|60|80|100)/|autocast|fp32,|Error|rror:" runs/seed_gpu$amp/train.log | cut -c1-170
  tail -2 "$OUT_DIR/seed$amp.log" | cut -c1-200
done
echo "-- --gpus 2 with one GPU visible (expected: one line)"
$PY tools/train.py $SEED --gpus 2 --cfg-options $CS 2>&1 | tail -2

fi

if want 3; then
echo "== 3. latency on the GPU"
timeout 120 $PY -m solov2.cli benchmark $SEED --device cuda --precision fp16 bf16 --iters 30 --warmup 10 \
  --no-memory 2>&1 | tee "$OUT_DIR/bench_seed.log" | tail -8
timeout 120 $PY -m solov2.cli benchmark configs/solov2/coco/solov2_light_512_dcn_r50_fpn_3x.py --device cuda \
  --image-size 512 864 --precision fp16 --iters 20 --warmup 5 --no-memory 2>&1 | tee "$OUT_DIR/bench_dcn.log" | tail -6

fi

if want 4; then
echo "== 4. the Predictor on CUDA against the CPU (demo model, 20 val images)"
timeout 120 $PY - <<'EOF' 2>&1 | tee "$OUT_DIR/parity.log"
import glob
import numpy as np
from solov2 import Predictor
images = sorted(glob.glob("runs/cuda_demo/data/val/images/*"))[:20]
cpu = Predictor("runs/cuda_demo/latest.pth", device="cpu", precision="fp32")
for precision in ("fp32", "fp16"):
    gpu = Predictor("runs/cuda_demo/latest.pth", device="cuda", precision=precision, batch_size=8)
    worst_score, worst_iou, count, same = 0.0, 1.0, 0, True
    for a, b in zip(cpu(images), gpu(images)):
        count += len(a["scores"])
        if len(a["scores"]) != len(b["scores"]) or not np.array_equal(a["labels"], b["labels"]):
            same = False
            continue
        if len(a["scores"]):
            worst_score = max(worst_score, float(np.abs(a["scores"] - b["scores"]).max()))
            inter = (a["masks"] & b["masks"]).sum((1, 2))
            union = np.maximum((a["masks"] | b["masks"]).sum((1, 2)), 1)
            worst_iou = min(worst_iou, float((inter / union).min()))
    print(f"cuda {precision} vs cpu fp32: {count} instances, same instances and labels {same}, "
          f"max score difference {worst_score:.2e}, min mask IoU {worst_iou:.4f}")
EOF
fi

if want 5; then
echo "== 5. the seed network beside MMDetection 3.3 on this GPU (same weights; batch 1 and 8, fp32 and fp16)"
MMDET_PY=${MMDET_PY:-/tmp/mmdet-venv/bin/python}
if ! "$MMDET_PY" -c "import mmdet, mmcv, mmengine" > /dev/null 2>&1; then
  echo "skipped: $MMDET_PY cannot import mmdet, mmcv and mmengine (benchmarks/mmdet_compare/setup.sh makes it)"
else
  timeout 300 "$MMDET_PY" benchmarks/mmdet_compare/network_speed.py --device cuda --batch 1 8 --precision fp32 fp16 \
    --iters 30 --warmup 10 2>&1 | grep -v Warning | tee "$OUT_DIR/mmdet_gpu.log" | tail -14
fi
fi

#!/usr/bin/env bash
# One command for a lent GPU machine: train on CUDA from a prepared set (python -m train.prepare), then
# time the GPU paths, and leave best/, metrics.jsonl, curves.png, the log and the speed figures in $OUT.
#
#   bash train/gpu_job.sh PREPARED_DIR [train.run flags ...]
#
# From the repository root. Environment:
#   OUT        where results go (the device tool sets it; default artifacts/gpu_job)
#   EPOCHS     epochs to train (default 40)
#   DEVICE     cuda (default) or cpu: the CPU run is the smoke test that proves the script starts
#   MAX_STEPS  stop after this many training steps (the smoke test uses 2)
# Wheels in .whl/ (datasets and what it needs that the GPU image lacks) are installed first.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${1:?usage: bash train/gpu_job.sh PREPARED_DIR [train.run flags ...]}
shift
OUT=${OUT:-artifacts/gpu_job}
EPOCHS=${EPOCHS:-40}
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"

if compgen -G ".whl/*.whl" >/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi

device_flags=(--gpu)
[ "$DEVICE" = cpu ] && device_flags=(--workers 0)
step_flags=()
[ -n "${MAX_STEPS:-}" ] && step_flags=(--max-steps "$MAX_STEPS")
[ "$DEVICE" = cuda ] && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"

run_dir=$(mktemp -d)/run
started=$(date +%s)
"$PYTHON" -m train.run --data "$DATA" --out "$run_dir" --epochs "$EPOCHS" \
  "${device_flags[@]}" "${step_flags[@]}" "$@" 2>&1 | tee "$OUT/train.log"
echo "training: $(($(date +%s) - started)) s wall" | tee -a "$OUT/train.log"

# At most 8 files come back from a device run: the model (3 files), its log and curves, the speed table.
cp "$run_dir/best/config.json" "$run_dir/best/model.safetensors" "$OUT/"
cp "$run_dir/best/README.md" "$OUT/model_card.md"
cp "$run_dir/metrics.jsonl" "$run_dir/curves.png" "$OUT/"
if [ "$DEVICE" = cuda ]; then
  # speed.py makes its frames from EgoHands and HGR photos: take them from the prepared set's val split.
  photos=$(mktemp -d)
  "$PYTHON" - "$DATA" "$photos" <<'PY'
import sys
from pathlib import Path

import datasets

val, out = datasets.load_from_disk(sys.argv[1])["validation"], Path(sys.argv[2])
for source in ("egohands", "hgr"):
    (out / source / "images").mkdir(parents=True)
    rows = [r for r in val.select(range(len(val))) if r["source"] == source][:8]
    for row in rows:
        (out / source / "images" / f"{row['id']}.jpg").write_bytes(row["image"]["bytes"])
PY
  "$PYTHON" benchmarks/speed.py --device cuda --model "$run_dir/best" --data "$photos" --paths default,compiled \
    --skip-dice 2>&1 | tee "$OUT/speed.txt"
fi
echo "results in $OUT: $(ls "$OUT" | tr '\n' ' ')"

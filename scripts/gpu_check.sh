#!/usr/bin/env bash
# The device figures, for one GPU, in one command meant to take at most 8 minutes on an H100:
#   0. the offline install: if hydra, omegaconf, simplejpeg, torchdata, wandb, mlxtend or
#      torchcodec is missing, the wheels of scripts/download_wheels.py in $WHEELS (default
#      ./wheels, made beforehand on a machine with network) are installed with --no-index;
#   1. training img/s of alexnet, resnet50 and mobilenet_v2 on a generated ImageNet tree (bf16,
#      channels_last, compile off and on), with CPU decoding in $WORKERS (16) workers and with
#      GPU decoding (data.decode=gpu), each row with its data-wait share (scripts/bench_train.py);
#   2. the VGG rows of the learning table at the paper's batch (scripts/gpu_learning_check.sh).
# Everything lands in $OUT: gpu_check.csv (one row per configuration), learning.md, the logs.
# The compile=false rows of every model run first, then the compile=true ones while section 1's
# $BENCH_BUDGET seconds last; a row that fails or runs past $ROW_LIMIT seconds is logged and
# the rest go on, and the log names every row left unmeasured. The timings are estimates until
# the script has run on an H100.
#
#   python scripts/download_wheels.py download --out wheels --python 3.12   # with network
#   OUT=/tmp/gpu bash scripts/gpu_check.sh            # on the GPU machine, offline
#   TINY=1 OUT=/tmp/gpu bash scripts/gpu_check.sh     # the same steps at toy sizes, on a CPU
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}
WHEELS=${WHEELS:-wheels}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" WANDB_MODE=offline WANDB_SILENT=true
CSV="$OUT/gpu_check.csv"
rm -f "$CSV"
if [[ "${TINY:-0}" == 1 ]]; then
  BATCH=2 STEPS=2 WARMUP=1 WORKERS=1 MODELS="alexnet" COMPILE="false" ROW_LIMIT=300
  PRECISION=fp32   # bf16 autocast is slow on most CPUs: seconds per AlexNet step
  BENCH_BUDGET=600
  TREE_ARGS=(--classes 2 --train 3 --val 1 --size 64 48)
else
  BATCH=256 STEPS=15 WARMUP=5 WORKERS=16 MODELS="alexnet resnet50 mobilenet_v2" PRECISION=bf16
  COMPILE="false true" ROW_LIMIT=75   # compile=true spends its first step (~30 s) compiling
  BENCH_BUDGET=${BENCH_BUDGET:-210}   # seconds for section 1; the learning rows take ~4-5 min
  TREE_ARGS=(--classes 20 --train 150 --val 2)   # 3,000 training JPEGs, ImageNet-sized
fi
start=$SECONDS
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1 || true

echo "== 0. offline install"
if python -c "import hydra, omegaconf, simplejpeg, torchdata, wandb, mlxtend, torchcodec" \
    2> /dev/null; then
  echo "everything is installed"
elif [[ -f "$WHEELS/manifest.txt" ]]; then
  python scripts/download_wheels.py install --wheels "$WHEELS"
else
  echo "error: packages are missing and $WHEELS/manifest.txt does not exist: run" \
    "python scripts/download_wheels.py download --out $WHEELS --python 3.N where pip works" >&2
  exit 2
fi
echo "-- $((SECONDS - start)) s"

echo "== 1. training img/s: CPU decoding in $WORKERS workers, and GPU decoding"
TREE="$OUT/imagenet"
[[ -d "$TREE/train" ]] || python scripts/make_fake_imagenet.py "$TREE" "${TREE_ARGS[@]}"
# compile=false rows for every model first, then compile=true ones while the budget lasts.
bench_start=$SECONDS
for compile in $COMPILE; do
  for model in $MODELS; do
    for decode in cpu gpu; do
      if (( SECONDS - bench_start > BENCH_BUDGET )); then
        echo "not measured (past the ${BENCH_BUDGET} s budget):" \
          "$model compile=$compile decode=$decode"
        continue
      fi
      timeout "$ROW_LIMIT" python scripts/bench_train.py --steps "$STEPS" --warmup "$WARMUP" \
        --csv "$CSV" model="$model" data=real data.root="$TREE" data.batch_size="$BATCH" \
        data.num_workers="$WORKERS" data.decode="$decode" precision="$PRECISION" \
        channels_last=true compile="$compile" \
        || echo "row failed or ran past ${ROW_LIMIT} s: $model compile=$compile decode=$decode"
    done
  done
done 2>&1 | tee "$OUT/bench_real.log"
echo "-- $((SECONDS - start)) s"

echo "== 2. the VGG rows of the learning table at the paper's batch"
if [[ "${LEARNING:-1}" == 1 ]]; then
  OUT="$OUT/learning" bash scripts/gpu_learning_check.sh | tail -n 5
  cp "$OUT/learning/learning.md" "$OUT/learning.md" 2> /dev/null || true
else
  echo "skipped (LEARNING=0)"
fi
echo "-- $((SECONDS - start)) s; rows in $CSV:"
cat "$CSV"

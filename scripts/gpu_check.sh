#!/usr/bin/env bash
# The GPU check of issue #11 "Speed", for one GPU, in under 8 minutes on an H100-class machine:
#   1. scripts/bench_train.py on synthetic batches for resnet50, alexnet and vgg16: fp32, then
#      bf16 + channels_last with compile off and on (NVIDIA's ResNet-50 reference: 2,470 img/s on
#      one A100, AMP, channels_last; our goal: >= 3,000 img/s bf16 + channels_last on an H100);
#   2. the real loader on a generated ImageNet tree with 16 workers (data=real: data wait apart);
#   3. a 1-epoch training run on that tree with trainer=gpu.
# Everything lands in $OUT: gpu_check.csv (one row per configuration), the logs, the run.
#
#   OUT=/tmp/gpu bash scripts/gpu_check.sh            # on the GPU machine
#   TINY=1 OUT=/tmp/gpu bash scripts/gpu_check.sh     # the same steps at toy sizes, on a CPU
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" WANDB_MODE=offline WANDB_SILENT=true
CSV="$OUT/gpu_check.csv"
rm -f "$CSV"
if [[ "${TINY:-0}" == 1 ]]; then
  BATCH=2 STEPS=2 WARMUP=1 WORKERS=1 MODELS="resnet18" COMPILE="false"
  TREE_ARGS=(--classes 2 --train 3 --val 1 --size 64 48)
else
  BATCH=256 STEPS=30 WARMUP=10 WORKERS=16 MODELS="resnet50 alexnet vgg16" COMPILE="false true"
  TREE_ARGS=(--classes 40 --train 100 --val 5)   # 4,000 training JPEGs: 15 batches of 256
fi
bench() { python scripts/bench_train.py --steps "$STEPS" --warmup "$WARMUP" --csv "$CSV" "$@"; }
start=$SECONDS
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1 || true

echo "== 1. synthetic batches"
for model in $MODELS; do
  bench model="$model" data.batch_size="$BATCH" precision=fp32
  for compile in $COMPILE; do
    bench model="$model" data.batch_size="$BATCH" precision=bf16 channels_last=true compile="$compile"
  done
done 2>&1 | tee "$OUT/bench_synthetic.log"
echo "-- $((SECONDS - start)) s"

echo "== 2. the real loader, $WORKERS workers"
TREE="$OUT/imagenet"
[[ -d "$TREE/train" ]] || python scripts/make_fake_imagenet.py "$TREE" "${TREE_ARGS[@]}"
first=${MODELS%% *}
bench model="$first" data=real data.root="$TREE" data.batch_size="$BATCH" \
  data.num_workers="$WORKERS" precision=bf16 channels_last=true 2>&1 | tee "$OUT/bench_real.log"
echo "-- $((SECONDS - start)) s"

echo "== 3. one epoch with trainer=gpu"
accelerator=()
[[ "${TINY:-0}" == 1 ]] && accelerator=(trainer.accelerator=cpu trainer.precision=bf16-mixed)
python src/train.py model="$first" data.root="$TREE" trainer=gpu "${accelerator[@]}" \
  trainer.max_epochs=1 data.batch_size="$BATCH" data.num_workers="$WORKERS" logger=csv \
  callbacks.throughput.every_n_steps=5 hydra.run.dir="$OUT/run" 2>&1 | tail -n 30 \
  | tee "$OUT/train.log"
echo "-- $((SECONDS - start)) s; rows in $CSV:"
cat "$CSV"

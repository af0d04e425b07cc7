#!/usr/bin/env bash
# The VGG rows of the learning table (issue #10) at the paper's batch, for one GPU, in about
# 5 minutes on an H100-class machine. On 2 CPU cores the check runs VGG at batch 4, where the
# linear rule leaves 1/64 of the paper's rate, and 128 steps are 2 of the paper's: too few for
# N(0, 0.01) to leave its start. Here each step is one of the paper's (batch 256, lr 0.01):
#   1. VGG-11 as the paper trains it, N(0, 0.01), over 256 digits; kept as net A;
#   2. VGG-16 from that net A (section 3.1: its first four convs and three FCs, the rest
#      N(0, 0.01)), and VGG-16 from Glorot's init (the authors' later note).
# Everything lands in $OUT: learning.md (the table rows), the log, net_a.ckpt.
#
#   OUT=/tmp/gpu bash scripts/gpu_learning_check.sh          # on the GPU machine
#   TINY=1 OUT=/tmp/gpu bash scripts/gpu_learning_check.sh   # the same steps at toy sizes, CPU
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_learning_check}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" WANDB_MODE=offline WANDB_SILENT=true
if [[ "${TINY:-0}" == 1 ]]; then
  SIZE=(check.images=2 check.batch_size=2) PASSES_A=1 PASSES_D=1
else
  SIZE=(check.images=256 check.batch_size=256) PASSES_A=400 PASSES_D=200  # one paper step a pass
fi
check() { python scripts/check_learning.py "${SIZE[@]}" "$@" 2>&1 | tee -a "$OUT/learning.log"; }
start=$SECONDS
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1 || true
: > "$OUT/learning.log"
echo "== 1. VGG-11, N(0, 0.01), $PASSES_A steps of the paper's"
check model=vgg11 check.passes="$PASSES_A" check.save="$OUT/net_a.ckpt" || true
echo "-- $((SECONDS - start)) s"
echo "== 2. VGG-16 from net A, and from Glorot's init, $PASSES_D steps"
check model=vgg16 model.net.init=paper model.init_from="$OUT/net_a.ckpt" check.passes="$PASSES_D" || true
check model=vgg16 check.passes="$PASSES_D" || true
echo "-- $((SECONDS - start)) s"
grep -E "^(vgg|  )" "$OUT/learning.log" > "$OUT/learning.md" || true
cat "$OUT/learning.md"

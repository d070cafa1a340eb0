#!/usr/bin/env bash
# Recipe for the method's benchmark on the synthetic heads (issue 4), on one GPU machine.
# The chain (checked on CPU with tiny iteration counts):
#   make-heads -> project N_TEST test heads and N_JOINT train heads into the shipped GAN
#   -> joint pre-training over the train instances (method.mode=joint)
#   -> instance-specific runs of the test instances started from the joint weights (--init)
#   -> evaluate every stage's shape.h5 against the ground truth (SIDE, MAD) next to the baselines.
# Usage: N_TEST=50 N_JOINT=200 PROFILE=bench bash scripts/gpu_bench_method.sh [--set method.KEY=V ...]
# (the extra --set overrides go to the reconstruct runs; make-heads and project use params.yaml)
# Outputs under $W (default /root/bench) and copies of the metrics under $OUT.
set -euo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
W=${W:-/root/bench}
OUT=${OUT:-$W/out}
N_TEST=${N_TEST:-50}
N_JOINT=${N_JOINT:-200}
PROFILE=${PROFILE:-bench}
DEVICE=${DEVICE:-cuda}
G2S="python3 -m gan2shape.cli -q"
SET=(--set "method.profile=$PROFILE" "$@")
mkdir -p "$W" "$OUT"

[ -f "$W/heads/test.h5" ] || $G2S make-heads --out "$W/heads" --device "$DEVICE"
[ -f "$W/latents_test.h5" ] || $G2S project --checkpoint data/stylegan2_heads64.pt --images "$W/heads/test.h5" \
    --out "$W/latents_test.h5" --limit "$N_TEST" --device "$DEVICE"
[ -f "$W/latents_train.h5" ] || $G2S project --checkpoint data/stylegan2_heads64.pt --images "$W/heads/train.h5" \
    --out "$W/latents_train.h5" --limit "$N_JOINT" --device "$DEVICE"

$G2S sample-instances --latents "$W/latents_train.h5" --out "$W/joint/instances.h5" --device "$DEVICE"
$G2S reconstruct "${SET[@]}" --set method.mode=joint --instances "$W/joint/instances.h5" --out "$W/joint" \
    --device "$DEVICE" | tee "$OUT/joint_summary.json"
joint_shape=$(ls -d "$W"/joint/stage*/shape.h5 | sort -V | tail -1)

$G2S sample-instances --latents "$W/latents_test.h5" --out "$W/test/instances.h5" --device "$DEVICE"
$G2S reconstruct "${SET[@]}" --init "$joint_shape" --instances "$W/test/instances.h5" --out "$W/test" \
    --device "$DEVICE" | tee "$OUT/test_summary.json"

for shape in $(ls -d "$W"/test/stage[1-9]*/shape.h5 | sort -V); do
  stage=$(basename "$(dirname "$shape")")
  $G2S evaluate --test "$W/heads/test.h5" --train "$W/heads/train.h5" --pred "$shape" --out "$W/eval_$stage"
  cp "$W/eval_$stage/metrics.json" "$OUT/metrics_$stage.json"
done

#!/usr/bin/env bash
# Instance runs from scratch (bench profile) of the first N projected test heads of the benchmark, one
# per variant, side by side on one GPU (issue 4 investigation; experiments/method_accuracy/results/bench_h200/README.md).
# Needs results/bench/heads/test.h5 and results/bench/latents/test.h5 (carry results/bench).
# On the GPU machine: bash experiments/method_accuracy/gpu_scratch_probe.sh start | poll [S] | collect
#   start      sample the instances (with the heads' GT masks, as dvc.yaml does) and start every variant
#   poll [S]   wait up to S seconds (default 540) or until all variants are done; print progress; collect
#   collect    $OUT/probe_evals.tar.gz: per variant eval/ (metrics.json, per_image.json, table.md,
#              depth_sheet.png) and its log; $OUT/summary.txt: SIDE / MAD / relief per variant
# Variants: VARIANTS="name=--set k=v --set k=v;name2=..." (every name runs `reconstruct` with these options).
# FOLLOW=1: also experiments/method_accuracy/pose_follow.py on each run (how far its projected samples turn, and how far
# its step-3 view net thinks they do), $W/<variant>/pose_follow.json, in the summary and the tarball;
# FOLLOW_ARGS: more options for pose_follow.py (e.g. "--train-steps 2000").
# PROJECT="options": first project the N test heads anew (`gan2shape project` with these options, e.g.
# "--set project.w_plus=false") into $W/latents.h5 and run every variant on those instead of
# results/bench/latents/test.h5. CKPT: the generator of that projection (default the shipped one; give the
# variants `--set method.checkpoint=$CKPT` too).
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD" PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
W=${W:-/root/sp}; N=${N:-20}; G="python3 -m gan2shape.cli -q"; OUT=${OUT:-$W/out}
VARIANTS=${VARIANTS:-"near098_none=--set method.prior.near=0.98 --set method.perceptual=none"}
source "$(dirname "$0")/variants.sh"
summary() {
  for v in $(names); do
    [ -f $W/$v/eval/metrics.json ] && python3 - $W/$v/eval/metrics.json $v <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
print(sys.argv[2], {k: (round(r["side_x1e2_mean"], 3), round(r["mad_mean"], 2), r.get("n")) for k, r in m["rows"].items()},
      {k: round(v, 3) for k, v in m.get("diagnostics", {}).get("prediction", {}).items() if "relief" in k and isinstance(v, float)})
PY
  done
}
collect() {
  mkdir -p $OUT; summary > $OUT/summary.txt
  [ -f $W/latents.h5 ] && python3 -c "import h5py, sys; p = h5py.File(sys.argv[1])['psnr'][:]; print('projected with', sys.argv[2], 'PSNR mean', round(float(p.mean()), 2), 'min', round(float(p.min()), 2))" $W/latents.h5 "$PROJECT" >> $OUT/summary.txt
  cat $OUT/summary.txt
  for v in $(names); do [ -f $W/$v/pose_follow.json ] && echo "$v $(cat $W/$v/pose_follow.json)"; done >> $OUT/summary.txt
  (cd $W && tar czf $OUT/probe_evals.tar.gz $(for v in $(names); do ls -d $v/eval $v/pose_follow.json $v.log 2>/dev/null; done))
}
case ${1:-poll} in
start) start_detached "$0";;
_run)
  LAT=results/bench/latents/test.h5
  if [ -n "${PROJECT:-}" ]; then
    $G project $PROJECT --checkpoint ${CKPT:-data/stylegan2_heads64.pt} --images results/bench/heads/test.h5 --limit $N \
      --out $W/latents.h5 --device cuda && LAT=$W/latents.h5
  fi
  $G sample-instances --latents $LAT --masks results/bench/heads/test.h5 --limit $N \
    --out $W/inst.h5 --device cuda
  for v in $(names); do
    ( set -x; t0=$SECONDS; mkdir -p $W/$v
      $G reconstruct --set method.profile=bench $(opts $v) --instances $W/inst.h5 --out $W/$v --device cuda
      $G evaluate --test results/bench/heads/test.h5 --pred $W/$v/stage1/shape.h5 --out $W/$v/eval
      [ "${FOLLOW:-0}" = 1 ] && python3 experiments/method_accuracy/pose_follow.py $(opts $v) --run $W/$v --instances $W/inst.h5 \
        --heads results/bench/heads --latents $LAT --eval $W/$v/eval \
        --out $W/$v/pose_follow.json ${FOLLOW_ARGS:-}
      echo "$v DONE $((SECONDS - t0)) s" ) > $W/$v.log 2>&1 &
  done
  wait;;
poll)
  end=$((SECONDS + ${2:-540}))
  while [ $SECONDS -lt $end ]; do
    n_done=0; for v in $(names); do grep -q DONE $W/$v.log 2>/dev/null && n_done=$((n_done + 1)); done
    [ $n_done -eq $(names | wc -l) ] && break
    sleep 15
  done
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
  for v in $(names); do echo "$v: $(grep -a 'DONE\|Error\|error' $W/$v.log | tr '\n' ' ' | cut -c1-300)"; done
  collect;;
collect) collect;;
esac

#!/usr/bin/env bash
# Oracle step-3 sweep on the GPU (issue 4 investigation; see experiments/method_accuracy/results/method_probe/README.md).
# Usage on the GPU machine: bash experiments/method_accuracy/gpu_oracle_sweep.sh start | start-joint | poll | collect
# start: make the heads, then run the variants below as parallel background processes (one GPU).
# start-joint: the same for joint pre-training on oracle data of 100 train heads (at most 3 processes at
# once: 20 instance copies take ~28 GB of GPU memory and ~9 GB of disk each).
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
W=${W:-/root/w}; mkdir -p $W/sweep
case ${1:-poll} in
start)
  [ -f $W/heads/test.h5 ] || python3 -m gan2shape.cli -q make-heads --out $W/heads --device cuda > /dev/null
  run() {  # tag, then --set overrides
    local tag=$1; shift
    setsid nohup python3 experiments/method_accuracy/oracle_step3.py --heads $W/heads --n 20 --p 400 --samples oracle \
      --out $W/sweep/$tag --device cuda "$@" > $W/sweep/$tag.log 2>&1 &
  }
  run it1000 --set 'method.profiles.bench.step3_iters=[1000,1000]'
  run smooth01 --set method.lam_smooth=0.1
  run it1000_smooth01 --set 'method.profiles.bench.step3_iters=[1000,1000]' --set method.lam_smooth=0.1
  run noflip --set method.flip3_stage1=false
  run perc_none --set method.perceptual=none
  echo started;;
start-joint)
  [ -f $W/heads/test.h5 ] || python3 -m gan2shape.cli -q make-heads --out $W/heads --device cuda > /dev/null
  run() {
    local tag=$1; shift
    setsid nohup python3 experiments/method_accuracy/oracle_step3.py --heads $W/heads --n 20 --p 400 --samples oracle \
      --out $W/sweep/$tag --device cuda "$@" > $W/sweep/$tag.log 2>&1 &
  }
  run it1000 --set 'method.profiles.bench.step3_iters=[1000,1000]'
  run joint100 --joint 100 --joint-p 128
  run joint100_long --joint 100 --joint-p 128 --set 'method.profiles.joint.step3_iters=[1500,1000]' \
    --set 'method.profiles.joint.step1_iters=[700,300]'
  echo started;;
poll)
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
  for f in $W/sweep/*.log; do echo "$f: $(grep -c source $f) done; $(tail -c 300 $f | tr '\r' '\n' | tail -1)"; done;;
collect)
  for f in $W/sweep/*.log; do echo "== $(basename $f .log)"; grep -h '^{' $f; done > $OUT/oracle_sweep.jsonl
  cat $OUT/oracle_sweep.jsonl; tail -n 3 $W/sweep/*.log | grep -i -B2 error || true;;
esac

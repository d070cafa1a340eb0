#!/usr/bin/env bash
# Real-pipeline joint probe plus the step-2 oracle (issue 4 investigation; see
# experiments/method_accuracy/results/method_probe/README.md). On the GPU machine:
#   bash experiments/method_accuracy/gpu_step2_probe.sh start | poll | collect
# start: gpu_joint_probe.sh (NJ train heads jointly, then N test heads) in the background, and, once its
# test instances exist, oracle_invert.py on them (default step 2, and with method.f1_d=2).
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
W=/root/w
case ${1:-poll} in
start)
  mkdir -p $W
  NJ=${NJ:-100} N=${N:-20} setsid nohup bash experiments/method_accuracy/gpu_joint_probe.sh > $W/joint_probe.out 2>&1 &
  setsid nohup bash -c "
    while [ ! -f $W/test/inst.h5 ]; do sleep 5; done; sleep 5
    python3 experiments/method_accuracy/oracle_invert.py --heads $W/heads --instances $W/test/inst.h5 --out $W/oinv --p 400 \
      --device cuda > $W/oinv.log 2>&1 &
    python3 experiments/method_accuracy/oracle_invert.py --heads $W/heads --instances $W/test/inst.h5 --out $W/oinv_f1d2 --p 400 \
      --device cuda --set method.f1_d=2 > $W/oinv_f1d2.log 2>&1 &
    wait" > /dev/null 2>&1 &
  echo started;;
poll)
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
  tail -n 4 $W/log 2>/dev/null | tr '\r' '\n' | tail -4
  for f in $W/oinv*.log; do [ -f $f ] && echo "$f: $(tail -c 400 $f)"; done;;
collect)
  cp $W/log $OUT/joint_probe.log 2>/dev/null
  for f in $W/oinv*.log; do cp $f $OUT/; done
  for d in $W/oinv $W/oinv_f1d2; do [ -f $d/examples.pt ] && cp $d/examples.pt $OUT/$(basename $d)_examples.pt; done
  [ -f $W/viz_test.png ] && cp $W/viz_test.png $OUT/
  [ -f $W/e_test/metrics.json ] && cp $W/e_test/metrics.json $OUT/
  ls $OUT;;
esac

#!/usr/bin/env bash
# Real instance runs (real step 2 through the shipped GAN) started from joint networks pre-trained on
# oracle data (issue 4 investigation; experiments/method_accuracy/results/method_probe/README.md): does the real step 2
# help or hurt once depth/view nets are good? On the GPU machine: bash experiments/method_accuracy/gpu_oracle_init.sh
# start | poll | collect
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
W=/root/w; N=${N:-20}; G="python3 -m gan2shape.cli -q"
case ${1:-poll} in
start)
  mkdir -p $W
  setsid nohup bash -c "
    t0=\$(date +%s)
    [ -f $W/heads/test.h5 ] || $G make-heads --out $W/heads --device cuda > /dev/null
    $G project --checkpoint data/stylegan2_heads64.pt --images $W/heads/test.h5 --out $W/lat_test.h5 --limit $N --device cuda &
    python3 experiments/method_accuracy/oracle_step3.py --heads $W/heads --n $N --out $W/oj --device cuda --joint 100 --joint-p 128 \
      --joint-only --set 'method.profiles.joint.step3_iters=[1500,1000]' --set 'method.profiles.joint.step1_iters=[700,300]'
    wait
    echo joint \$(( \$(date +%s) - t0 )) s
    $G sample-instances --latents $W/lat_test.h5 --out $W/test/inst.h5 --device cuda
    $G reconstruct --set method.profile=bench --init $W/oj/joint/shape2.h5 --instances $W/test/inst.h5 --out $W/test --device cuda
    echo test \$(( \$(date +%s) - t0 )) s
    $G evaluate --test $W/heads/test.h5 --train $W/heads/train.h5 --pred $W/test/stage1/shape.h5 --out $W/e_test
    python3 experiments/method_accuracy/viz_stage.py $W/test $W/viz_test.png
    echo DONE" > $W/log 2>&1 &
  echo started;;
poll)
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
  grep -h '^{\|^joint\|^test\|DONE' $W/log; tail -n 2 $W/log | tr '\r' '\n' | tail -2;;
collect)
  cp $W/log $OUT/oracle_init.log; cp $W/e_test/metrics.json $OUT/ 2>/dev/null; cp $W/viz_test.png $OUT/ 2>/dev/null; ls $OUT;;
esac

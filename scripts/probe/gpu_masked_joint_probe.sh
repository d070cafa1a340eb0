#!/usr/bin/env bash
# The benchmark protocol with object masks, side by side (issue 4 investigation; see
# benchmarks/results/method_probe/README.md): joint pre-training on NJ train heads, then instance runs
# of N test heads from it, instances carrying the heads' GT masks; variant A reference view origin
# (canonical), B pseudo-sample views around each target's view (method.view_origin=target).
# On the GPU machine: bash scripts/probe/gpu_masked_joint_probe.sh start | poll | collect
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
W=/root/w; N=${N:-50}; NJ=${NJ:-100}; G="python3 -m gan2shape.cli -q"
case ${1:-poll} in
start)
  mkdir -p $W
  setsid nohup bash -c "
    [ -f $W/heads/test.h5 ] || $G make-heads --out $W/heads --device cuda > /dev/null
    $G project --checkpoint data/stylegan2_heads64.pt --images $W/heads/test.h5 --out $W/lat_test.h5 --limit $N --device cuda &
    $G project --checkpoint data/stylegan2_heads64.pt --images $W/heads/train.h5 --out $W/lat_train.h5 --limit $NJ --device cuda
    wait
    $G sample-instances --latents $W/lat_train.h5 --masks $W/heads/train.h5 --out $W/train_inst.h5 --device cuda
    $G sample-instances --latents $W/lat_test.h5 --masks $W/heads/test.h5 --out $W/test_inst.h5 --device cuda
    for v in canonical target; do
      ( mkdir -p $W/\$v && cp $W/train_inst.h5 $W/\$v/joint_inst.h5 && cp $W/test_inst.h5 $W/\$v/test_inst.h5
        $G reconstruct --set method.mode=joint --set method.profile=joint --set method.view_origin=\$v \
          --instances $W/\$v/joint_inst.h5 --out $W/\$v/joint --device cuda
        $G reconstruct --set method.profile=bench --set method.view_origin=\$v --init $W/\$v/joint/stage2/shape.h5 \
          --instances $W/\$v/test_inst.h5 --out $W/\$v/test --device cuda
        $G evaluate --test $W/heads/test.h5 --train $W/heads/train.h5 --pred $W/\$v/test/stage1/shape.h5 --out $W/\$v/eval
        python3 scripts/probe/viz_stage.py $W/\$v/test $W/\$v/viz_test.png
        echo \$v DONE ) > $W/\$v.log 2>&1 &
    done
    wait" > $W/log 2>&1 &
  echo started;;
poll)
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
  for v in canonical target; do [ -f $W/$v.log ] && echo "$v: $(grep -c DONE $W/$v.log) done; $(tail -n 1 $W/$v.log | cut -c1-200)"; done;;
collect)
  for v in canonical target; do
    cp $W/$v/eval/metrics.json $OUT/metrics_$v.json 2>/dev/null; cp $W/$v/viz_test.png $OUT/viz_$v.png 2>/dev/null
    [ -f $OUT/metrics_$v.json ] && python3 -c "
import json;m=json.load(open('$OUT/metrics_$v.json'))
print('$v', {k: (round(r['side_x1e2_mean'],3), round(r['mad_mean'],2), r.get('n')) for k,r in m['rows'].items()})"
  done;;
esac

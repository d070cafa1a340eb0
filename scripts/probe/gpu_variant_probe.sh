#!/usr/bin/env bash
# The benchmark protocol with object masks for several method variants side by side (issue 4
# investigation; benchmarks/results/method_probe/README.md): per variant, joint pre-training on NJ
# projected train heads, then instance runs of N projected test heads started from it (bench profile),
# all instances carrying the heads' GT masks; then `gan2shape evaluate` and a picture.
# On the GPU machine: bash scripts/probe/gpu_variant_probe.sh start | poll | collect
# Variants: VARIANTS="name=--set k=v --set k=v;name2=..." (default: the four below). JOINT_EXTRA: options
# added after the variant's for the joint pre-training only (e.g. "--set method.lam_view=0").
# FOLLOW=1: also scripts/probe/step1_pose.py (step-1 views of joint stage 2 and of the test run against the
# GT poses, $W/<v>/step1_pose.jsonl) and scripts/probe/pose_follow.py on the test run (FOLLOW_ARGS: its
# options), both collected.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
W=${W:-/root/w}; N=${N:-20}; NJ=${NJ:-100}; G="python3 -m gan2shape.cli -q"
VARIANTS=${VARIANTS:-"canon=;canon_flip1=--set method.flip1_stage1=true;\
target06=--set method.view_origin=target --set method.view_scale=0.6;\
target06_flip1=--set method.view_origin=target --set method.view_scale=0.6 --set method.flip1_stage1=true"}
source "$(dirname "$0")/variants.sh"
case ${1:-poll} in
start) start_detached "$0";;
_run)
    [ -f $W/heads/test.h5 ] || $G make-heads --out $W/heads --device cuda > /dev/null
    $G project --checkpoint data/stylegan2_heads64.pt --images $W/heads/test.h5 --out $W/lat_test.h5 --limit $N --device cuda &
    $G project --checkpoint data/stylegan2_heads64.pt --images $W/heads/train.h5 --out $W/lat_train.h5 --limit $NJ --device cuda
    wait
    $G sample-instances --latents $W/lat_train.h5 --masks $W/heads/train.h5 --out $W/train_inst.h5 --device cuda
    $G sample-instances --latents $W/lat_test.h5 --masks $W/heads/test.h5 --out $W/test_inst.h5 --device cuda
    for v in $(names); do
      o=$(opts $v)
      ( set -x; t0=$SECONDS
        mkdir -p $W/$v/joint $W/$v/test && cp $W/train_inst.h5 $W/$v/joint/inst.h5 && cp $W/test_inst.h5 $W/$v/test/inst.h5
        $G reconstruct --set method.mode=joint --set method.profile=joint $o ${JOINT_EXTRA:-} \
          --instances $W/$v/joint/inst.h5 --out $W/$v/joint --device cuda
        echo "joint $((SECONDS - t0)) s"
        $G reconstruct --set method.profile=bench $o --init $W/$v/joint/stage2/shape.h5 \
          --instances $W/$v/test/inst.h5 --out $W/$v/test --device cuda
        echo "test $((SECONDS - t0)) s"
        $G evaluate --test $W/heads/test.h5 --train $W/heads/train.h5 --pred $W/$v/test/stage1/shape.h5 --out $W/$v/eval
        python3 scripts/probe/viz_stage.py $W/$v/test $W/$v/viz.png
        if [ "${FOLLOW:-0}" = 1 ]; then
          python3 scripts/probe/step1_pose.py $W/heads/train.h5 $W/$v/joint/stage2/albedo.h5 > $W/$v/step1_pose.jsonl
          python3 scripts/probe/step1_pose.py $W/heads/test.h5 $W/$v/test >> $W/$v/step1_pose.jsonl
          python3 scripts/probe/pose_follow.py $o --run $W/$v/test --instances $W/$v/test/inst.h5 --heads $W/heads \
            --latents $W/lat_test.h5 --eval $W/$v/eval --out $W/$v/pose_follow.json ${FOLLOW_ARGS:-}
        fi
        rm -f $W/$v/test/stage1/pseudo.h5 $W/$v/test/stage1/albedo.h5
        echo "$v DONE $((SECONDS - t0)) s" ) > $W/$v.log 2>&1 &
      # stage0 networks are read only by step 1: drop them once step 1 wrote its artifact (disk)
      ( while [ ! -f $W/$v/test/stage1/albedo.h5 ] && ! grep -q DONE $W/$v.log; do sleep 10; done
        rm -f $W/$v/test/stage0/shape.h5 ) &
    done
    wait;;
poll)
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader; df -h $W | tail -1
  tail -n 2 $W/log
  for v in $(names); do [ -f $W/$v.log ] && echo "$v: $(grep -a 'joint [0-9]\+ s\|test [0-9]\+ s\|DONE\|Error\|error' $W/$v.log | tr '\n' ' ' | cut -c1-300)"; done;;
collect)
  for v in $(names); do
    cp $W/$v/eval/metrics.json $OUT/metrics_$v.json 2>/dev/null; cp $W/$v/viz.png $OUT/viz_$v.png 2>/dev/null
    cp $W/$v/eval/per_image.json $OUT/per_image_$v.json 2>/dev/null; cp $W/$v.log $OUT/$v.log 2>/dev/null
    cat $W/$v/step1_pose.jsonl $W/$v/pose_follow.json > $OUT/pose_$v.jsonl 2>/dev/null
    [ -f $OUT/metrics_$v.json ] && python3 -c "
import json;m=json.load(open('$OUT/metrics_$v.json'))
print('$v', {k: (round(r['side_x1e2_mean'],3), round(r['mad_mean'],2), r.get('n')) for k,r in m['rows'].items()})"
  done;;
esac

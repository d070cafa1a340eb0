#!/usr/bin/env bash
# The benchmark protocol with object masks for several method variants side by side (issue 4
# investigation; experiments/method_accuracy/results/method_probe/README.md): per variant, joint pre-training on NJ
# projected train heads, then instance runs of N projected test heads started from it (bench profile),
# all instances carrying the heads' GT masks; then `gan2shape evaluate` and a picture.
# On the GPU machine: bash experiments/method_accuracy/gpu_variant_probe.sh start | poll | collect
# Variants: VARIANTS="name=--set k=v --set k=v;name2=..." (default: the four below). JOINT_EXTRA: options
# added after the variant's for the joint pre-training only (e.g. "--set method.lam_view=0").
# FOLLOW=1: also experiments/method_accuracy/step1_pose.py (step-1 views of joint stage 2, $W/<v>/step1_pose_joint.jsonl,
# and of each test run, <eval>/step1_pose.jsonl, against the GT poses) and experiments/method_accuracy/pose_follow.py on
# each test run (FOLLOW_ARGS: its options), all collected.
# TESTS="t=--set k=v;t2=...": several instance runs of the test heads from each variant's one joint run
# (paired on the same joint solution, which seeds decide: experiments/method_accuracy/results/bench_h200_anchor/README.md
# section 7), in $W/<v>/<t>, collected as <v>_<t>; default one run "test" (collected as <v>). Every
# variant's joint run is also scored on its own train heads after each stage ($W/<v>/eval_joint<k>,
# collected as metrics_joint<k>_<v>.json): SIDE / MAD and the canonical roughness of the joint solution.
# MAXV (default 2): variants run at once; the others wait for a free slot.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
W=${W:-/root/w}; N=${N:-20}; NJ=${NJ:-100}; G="python3 -m gan2shape.cli -q"; TESTS=${TESTS:-"test="}
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
      # at most MAXV variants at once: three joint runs of 200 heads side by side need ~140 GB (one hit
      # CUDA out of memory on the H200)
      while [ "$(jobs -rp | wc -l)" -ge "${MAXV:-2}" ]; do wait -n; done
      o=$(opts $v)
      ( set -x; t0=$SECONDS
        mkdir -p $W/$v/joint && cp $W/train_inst.h5 $W/$v/joint/inst.h5
        $G reconstruct --set method.mode=joint --set method.profile=joint $o ${JOINT_EXTRA:-} \
          --instances $W/$v/joint/inst.h5 --out $W/$v/joint --device cuda
        echo "joint $((SECONDS - t0)) s"
        for k in 1 2; do
          [ -f $W/$v/joint/stage$k/shape.h5 ] && $G evaluate --test $W/heads/train.h5 --no-baselines \
            --pred $W/$v/joint/stage$k/shape.h5 --out $W/$v/eval_joint$k
        done
        for t in $(names "$TESTS"); do
          to=$(opts $t "$TESTS")
          r=$W/$v/$t; e=$W/$v/eval; [ "$t" = test ] || e=$W/$v/eval_$t
          ( mkdir -p $r && cp $W/test_inst.h5 $r/inst.h5
            $G reconstruct --set method.profile=bench $o $to --init $W/$v/joint/stage2/shape.h5 \
              --instances $r/inst.h5 --out $r --device cuda
            echo "$t $((SECONDS - t0)) s"
            $G evaluate --test $W/heads/test.h5 --train $W/heads/train.h5 --pred $r/stage1/shape.h5 --out $e
            python3 experiments/method_accuracy/viz_stage.py $r $e/viz.png
            if [ "${FOLLOW:-0}" = 1 ]; then
              python3 experiments/method_accuracy/step1_pose.py $W/heads/test.h5 $r > $e/step1_pose.jsonl
              python3 experiments/method_accuracy/pose_follow.py $o $to --run $r --instances $r/inst.h5 --heads $W/heads \
                --latents $W/lat_test.h5 --eval $e --out $e/pose_follow.json ${FOLLOW_ARGS:-}
            fi
            rm -f $r/stage0/shape.h5 $r/stage1/pseudo.h5 $r/stage1/albedo.h5 ) &
        done
        wait
        [ "${FOLLOW:-0}" = 1 ] && python3 experiments/method_accuracy/step1_pose.py $W/heads/train.h5 $W/$v/joint/stage2/albedo.h5 \
          > $W/$v/step1_pose_joint.jsonl
        echo "$v DONE $((SECONDS - t0)) s" ) > $W/$v.log 2>&1 &
    done
    wait;;
poll)
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader; df -h $W | tail -1
  tail -n 2 $W/log
  for v in $(names); do [ -f $W/$v.log ] && echo "$v: $(grep -a '^[a-z0-9_]* [0-9]\+ s$\|DONE\|Error\|error' $W/$v.log | tr '\n' ' ' | cut -c1-300)"; done;;
collect)
  for v in $(names); do
    cp $W/$v.log $OUT/$v.log 2>/dev/null
    for k in 1 2; do cp $W/$v/eval_joint$k/metrics.json $OUT/metrics_joint${k}_$v.json 2>/dev/null; done
    cp $W/$v/step1_pose_joint.jsonl $OUT/pose_joint_$v.jsonl 2>/dev/null
    for t in $(names "$TESTS"); do
      e=$W/$v/eval; n=$v; [ "$t" = test ] || { e=$W/$v/eval_$t; n=${v}_$t; }
      cp $e/metrics.json $OUT/metrics_$n.json 2>/dev/null; cp $e/viz.png $OUT/viz_$n.png 2>/dev/null
      cp $e/per_image.json $OUT/per_image_$n.json 2>/dev/null
      cat $e/step1_pose.jsonl $e/pose_follow.json > $OUT/pose_$n.jsonl 2>/dev/null
      [ -f $OUT/metrics_$n.json ] && python3 -c "
import json;m=json.load(open('$OUT/metrics_$n.json'))
print('$n', {k: (round(r['side_x1e2_mean'],3), round(r['mad_mean'],2), r.get('n')) for k,r in m['rows'].items()},
      {k: round(v, 5) for k, v in m.get('diagnostics', {}).get('prediction', {}).items() if isinstance(v, float)})"
    done
    for k in 1 2; do [ -f $OUT/metrics_joint${k}_$v.json ] && python3 -c "
import json;m=json.load(open('$OUT/metrics_joint${k}_$v.json'));r=m['rows']['prediction']
print('$v joint stage $k (train heads)', round(r['side_x1e2_mean'],3), round(r['mad_mean'],2), r['n'],
      {k: round(v, 5) for k, v in m['diagnostics']['prediction'].items() if isinstance(v, float)})"; done
  done;;
esac

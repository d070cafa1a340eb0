#!/usr/bin/env bash
# The step-2 bench in one GPU call of under ten minutes (foreground, results in $OUT): the N test heads
# projected with the chosen w-space projection (PROJ_OPTS), prior / step 1 / step 2a (bench profile)
# once, then step 2b and the bench for each variant of $VARIANTS (name=view_scale:options, run side by
# side), then step 3 + evaluate while the deadline allows. Whatever has finished by DEADLINE seconds
# is packed into $OUT/results.tgz. STEP3=0: the bench only (no step 3 / evaluate).
# Usage on the GPU machine: bash experiments/step2_follow/run_short.sh
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
W=${W:-/root/s2b}; N=${N:-20}; DEV=${DEV:-cuda}; DEADLINE=${DEADLINE:-530}; X=${X:-}
CKPT=${CKPT:-data/stylegan2_heads64.pt}
PROJ_OPTS=${PROJ_OPTS:-"--set project.w_plus=false --set project.latent_prior=0.01"}
POSE_ARGS=${POSE_ARGS:-"--images 20000 --steps 2000"}
PRE=${PRE:-none}   # pretrain-encoder options for a fresh E file ($W/enc_linear.h5, used by $LIN); none: skip
BENCH_ARGS=${BENCH_ARGS:-"--free-samples 64 --free-steps 200"}
LIN="--set method.offset=linear --set method.encoder_init=$W/enc_linear.h5"
# def: today's defaults (linear offset, the shipped pre-trained E); ref: the reference's offset and fresh E
VARIANTS=${VARIANTS:-"def=0.3:;ref=0.3:--set method.offset=mapping --set method.encoder_init=null"}
G="python3 -m gan2shape.cli -q"
B="$X --set method.profile=bench --set method.checkpoint=$CKPT"
names() { echo "$VARIANTS" | tr ';' '\n' | cut -d= -f1; }
opts() { echo "$VARIANTS" | tr ';' '\n' | grep "^$1=" | cut -d= -f2-; }
mark() { echo "== $* $SECONDS s" | tee -a $W/marks; }
mkdir -p $W; OUT=${OUT:-$W/out}; mkdir -p $OUT
(
  $G make-heads $X --set heads.n_train=16 --set heads.n_test=$N --out $W/heads --device $DEV > $W/heads.log 2>&1
  mark heads
  $G train-pose $X $POSE_ARGS --out $W/pose.h5 --device $DEV > $W/pose.log 2>&1 &
  [ "$PRE" = none ] || $G pretrain-encoder $B $PRE --set method.offset=linear --out $W/enc_linear.h5 \
    --device $DEV > $W/enc.log 2>&1 &
  ( $G project $X $PROJ_OPTS --checkpoint $CKPT --images $W/heads/test.h5 --out $W/lat.h5 --device $DEV
    $G sample-instances $B --latents $W/lat.h5 --masks $W/heads/test.h5 --out $W/inst.h5 --device $DEV
    mark projection
    $G prior $B --instances $W/inst.h5 --out $W/stage0/shape.h5 --device $DEV
    $G step1 $B --instances $W/inst.h5 --shape $W/stage0/shape.h5 --out $W/stage1/albedo.h5 --device $DEV
    for vs in $(for v in $(names); do opts $v | cut -d: -f1; done | sort -u); do
      $G pseudo $B --set method.view_scale=$vs --albedo $W/stage1/albedo.h5 --instances $W/inst.h5 \
        --out $W/pseudo_$vs.h5 --device $DEV
    done
    mark prior step1 pseudo ) > $W/stage.log 2>&1 &
  wait
  mark pose encoder stages
  first=1
  for v in $(names); do
    IFS=: read -r vs o <<< "$(opts $v)"
    C="$B --set method.view_scale=$vs $o"; r=$W/v/$v; mkdir -p $r/stage1; ln -sf $W/pseudo_$vs.h5 $r/stage1/pseudo.h5
    b="--free-samples 0"; [ $first = 1 ] && b=$BENCH_ARGS; first=0
    ( $G invert $C --instances $W/inst.h5 --pseudo $r/stage1/pseudo.h5 --out $r/stage1/projected.h5 --device $DEV
      mark $v invert
      $G diagnose-step2 $C --pose $W/pose.h5 --instances $W/inst.h5 --run $r $b --out $r/bench --device $DEV
      mark $v bench
      if [ "${STEP3:-1}" = 1 ]; then
        $G step3 $C --instances $W/inst.h5 --albedo $W/stage1/albedo.h5 --projected $r/stage1/projected.h5 \
          --out $r/stage1/shape.h5 --device $DEV
        $G evaluate $X --test $W/heads/test.h5 --pred $r/stage1/shape.h5 --out $r/eval
      fi
      mark $v DONE ) > $W/v_$v.log 2>&1 &
  done
  wait
  mark all
) > $W/log 2>&1 &
main=$!
while kill -0 $main 2>/dev/null && [ $SECONDS -lt $DEADLINE ]; do sleep 5; done
mkdir -p $W/pack
for v in $(names); do
  for f in bench/step2_bench.json eval/metrics.json eval/per_image.json bench/run_sheet.png; do
    [ -f $W/v/$v/$f ] && cp $W/v/$v/$f $W/pack/${v}_$(basename $f)
  done
done
python3 experiments/step2_follow/summarize.py $W $(names) > $W/pack/summary.md 2>&1
cp $W/*.log $W/marks $W/pack/ 2>/dev/null
tar czf $OUT/results.tgz -C $W pack
cp $W/pack/summary.md $W/marks $OUT/ 2>/dev/null
cp $W/enc_linear.h5 $W/pose.h5 $OUT/ 2>/dev/null
cat $W/marks; cat $W/pack/summary.md; grep -l "Error\|Traceback" $W/*.log

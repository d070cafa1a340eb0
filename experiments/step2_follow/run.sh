#!/usr/bin/env bash
# Step 2 that turns (issue 18): the step-2 bench over projection, offset, encoder and view-scale
# settings, one factor at a time from the reference's, on N projected test heads (one GPU machine call,
# detached). Usage on the GPU machine:  bash experiments/step2_follow/run.sh start | poll | collect
# CPU dry run (tiny sizes): see experiments/step2_follow/README.md.
#
# 1. heads (NP test heads), the pose regressor (train-pose), and E pre-trained on the GAN for the
#    'linear' and the 'mapping' offset (pretrain-encoder), side by side;
# 2. the NP heads projected with each of $PROJ, then each projection's edit gain and typicality
#    (diagnose-step2 on the latents alone); the w-space variant with the highest edit gain at a mean
#    PSNR >= 28 dB becomes 'wp';
# 3. for the instance sets 'wplus' (the reference's projection) and 'wp': prior, step 1 (bench
#    profile) and step 2a at view_scale 0.3 and 1.2 (shared by the variants);
# 4. each variant of $VARIANTS (set:view_scale:options): step 2b (invert), the step-2 bench on its
#    projected samples (free offsets on the first variant of each pseudo-sample set; ground-truth-turned
#    renders where GT=1), step 3 and evaluate (SIDE / MAD of the one-stage run, not a benchmark row).
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
W=${W:-/root/s2}; N=${N:-20}; NP=${NP:-50}; DEV=${DEV:-cuda}; MAXJ=${MAXJ:-5}
X=${X:-}                                    # --set options added to every command (the dry run's sizes)
CKPT=${CKPT:-data/stylegan2_heads64.pt}
POSE_ARGS=${POSE_ARGS:-"--images 40000 --steps 4000"}
BENCH_ARGS=${BENCH_ARGS:-"--free-samples 64 --free-steps 200"}
GT_ARGS=${GT_ARGS:-"--gt-samples 400"}
G="python3 -m gan2shape.cli -q"
PRE=${PRE:-"--set pretrain_encoder.steps=4000 --set pretrain_encoder.batch_size=48"}
PROJ=${PROJ:-"wplus=;w=--set project.w_plus=false;w01=--set project.w_plus=false --set project.latent_prior=0.01;\
w03=--set project.w_plus=false --set project.latent_prior=0.03;\
w10=--set project.w_plus=false --set project.latent_prior=0.1;w30=--set project.w_plus=false --set project.latent_prior=0.3"}
LIN="--set method.offset=linear"; MAP="--set method.offset=mapping"
VARIANTS=${VARIANTS:-"ref=wplus:0.3:;ref_s1=wplus:0.3:--set method.seed=1;\
lin=wplus:0.3:$LIN;lin_pre=wplus:0.3:$LIN --set method.encoder_init=ENC_LIN;\
lin_pre_s1=wplus:0.3:$LIN --set method.encoder_init=ENC_LIN --set method.seed=1;\
map_pre=wplus:0.3:$MAP --set method.encoder_init=ENC_MAP;\
wp_ref=wp:0.3:;wp_lin_pre=wp:0.3:$LIN --set method.encoder_init=ENC_LIN;\
wp_lin_pre_vs12=wp:1.2:$LIN --set method.encoder_init=ENC_LIN"}
GT=${GT:-wp_lin_pre}
names() { echo "$1" | tr ';' '\n' | cut -d= -f1; }
opts() { echo "$2" | tr ';' '\n' | grep "^$1=" | cut -d= -f2-; }
slot() { while [ "$(jobs -rp | wc -l)" -ge "$MAXJ" ]; do wait -n; done; }
mark() { echo "== $* $((SECONDS)) s"; }

case ${1:-poll} in
start)
  mkdir -p "$W"; setsid nohup bash "$0" _run > "$W/log" 2>&1 < /dev/null & echo started;;
_run)
  set -x
  $G make-heads $X --set heads.n_train=16 --set heads.n_test=$NP --out $W/heads --device $DEV > $W/heads.log 2>&1
  mark heads
  $G train-pose $X $POSE_ARGS --out $W/pose.h5 --device $DEV > $W/pose.log 2>&1 &
  for k in linear mapping; do
    $G pretrain-encoder $X $PRE --set method.checkpoint=$CKPT --set method.offset=$k --out $W/enc_$k.h5 --device $DEV \
      > $W/enc_$k.log 2>&1 &
  done
  for p in $(names "$PROJ"); do
    ( $G project $X $(opts $p "$PROJ") --checkpoint $CKPT --images $W/heads/test.h5 --limit $NP --out $W/lat_$p.h5 \
        --device $DEV
      $G sample-instances $X --set method.checkpoint=$CKPT --latents $W/lat_$p.h5 --masks $W/heads/test.h5 \
        --out $W/inst50_$p.h5 --device $DEV
      $G sample-instances $X --set method.checkpoint=$CKPT --latents $W/lat_$p.h5 --masks $W/heads/test.h5 \
        --limit $N --out $W/inst_$p.h5 --device $DEV ) > $W/project_$p.log 2>&1 &
  done
  while [ ! -f $W/pose.h5 ] && jobs -rp | grep -q .; do sleep 2; done   # pose first (needed for the edit gains)
  for p in $(names "$PROJ"); do while [ ! -f $W/inst_$p.h5 ] && [ -z "$(grep -l Error $W/project_$p.log)" ]; do sleep 2; done; done
  mark projections
  for p in $(names "$PROJ"); do
    $G diagnose-step2 $X --set method.checkpoint=$CKPT --pose $W/pose.h5 --instances $W/inst50_$p.h5 \
      --free-samples 0 --out $W/edit_$p --device $DEV > $W/edit_$p.log 2>&1 &
  done
  while [ "$(ls $W/edit_*/step2_bench.json 2>/dev/null | wc -l)" -lt "$(names "$PROJ" | wc -l)" ] \
      && [ "$(grep -l Error $W/edit_*.log 2>/dev/null | wc -l)" = 0 ]; do sleep 2; done
  mark edit gains
  python3 experiments/step2_follow/pick_projection.py $W $(names "$PROJ") > $W/pick.json
  WP=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['pick'])" $W/pick.json)
  ln -sf $W/inst_$WP.h5 $W/inst_wp.h5
  for s in wplus wp; do
    ( $G prior $X --set method.profile=bench --set method.checkpoint=$CKPT --instances $W/inst_$s.h5 \
        --out $W/$s/stage0/shape.h5 --device $DEV
      $G step1 $X --set method.profile=bench --set method.checkpoint=$CKPT --instances $W/inst_$s.h5 \
        --shape $W/$s/stage0/shape.h5 --out $W/$s/stage1/albedo.h5 --device $DEV
      for vs in 0.3 1.2; do
        $G pseudo $X --set method.profile=bench --set method.checkpoint=$CKPT --set method.view_scale=$vs \
          --albedo $W/$s/stage1/albedo.h5 --instances $W/inst_$s.h5 --out $W/$s/pseudo_$vs.h5 --device $DEV
      done ) > $W/stage_$s.log 2>&1 &
  done
  wait   # pose, E pre-training, projections, prior / step 1 / pseudo
  mark prior step1 pseudo
  seen=""
  for v in $(names "$VARIANTS"); do
    IFS=: read -r s vs o <<< "$(opts $v "$VARIANTS")"
    o=${o//ENC_LIN/$W/enc_linear.h5}; o=${o//ENC_MAP/$W/enc_mapping.h5}
    set_key="$s:$vs"; b="--free-samples 0"
    case " $seen " in *" $set_key "*) ;; *) b=$BENCH_ARGS; seen="$seen $set_key";; esac
    [ "$v" = "$GT" ] && b="$BENCH_ARGS --heads $W/heads/test.h5 $GT_ARGS"
    C="$X --set method.profile=bench --set method.checkpoint=$CKPT --set method.view_scale=$vs $o"
    r=$W/v/$v; mkdir -p $r/stage1; ln -sf $W/$s/pseudo_$vs.h5 $r/stage1/pseudo.h5
    slot
    ( $G invert $C --instances $W/inst_$s.h5 --pseudo $r/stage1/pseudo.h5 --out $r/stage1/projected.h5 --device $DEV
      $G diagnose-step2 $C --pose $W/pose.h5 --instances $W/inst_$s.h5 --run $r $b --out $r/bench --device $DEV
      $G step3 $C --instances $W/inst_$s.h5 --albedo $W/$s/stage1/albedo.h5 --projected $r/stage1/projected.h5 \
        --out $r/stage1/shape.h5 --device $DEV
      $G evaluate $X --test $W/heads/test.h5 --pred $r/stage1/shape.h5 --out $r/eval
      echo "$v DONE" ) > $W/v_$v.log 2>&1 &
  done
  wait
  mark all
  python3 experiments/step2_follow/summarize.py $W $(names "$VARIANTS") > $W/summary.md
  mark summary;;
poll)
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null
  grep "^== " $W/log | tail -n 3; tail -n 1 $W/log
  grep -l "Error\|Traceback" $W/*.log 2>/dev/null | head
  ls $W/v 2>/dev/null | tr '\n' ' '; echo
  for f in $W/v_*.log; do [ -f "$f" ] && grep -q DONE "$f" && echo -n "$(basename $f .log) "; done; echo;;
collect)   # at most 8 files come back from the GPU machine: one archive and the key files
  o=${OUT:-$W/out}; mkdir -p $o $W/pack
  for p in $(names "$PROJ"); do cp $W/edit_$p/step2_bench.json $W/pack/edit_$p.json 2>/dev/null; done
  for v in $(names "$VARIANTS"); do
    cp $W/v/$v/bench/step2_bench.json $W/pack/bench_$v.json 2>/dev/null
    cp $W/v/$v/eval/metrics.json $W/pack/metrics_$v.json 2>/dev/null
    cp $W/v/$v/eval/per_image.json $W/pack/per_image_$v.json 2>/dev/null
    for f in $W/v/$v/bench/*.png; do [ -f "$f" ] && cp $f $W/pack/${v}_$(basename $f); done
  done
  cp $W/*.log $W/log $W/pick.json $W/summary.md $W/pack/ 2>/dev/null
  tar czf $o/results.tgz -C $W pack
  cp $W/summary.md $W/log $o/ 2>/dev/null
  cp $W/enc_linear.h5 $W/enc_mapping.h5 $W/pose.h5 $o/ 2>/dev/null
  ls -la $o;;
esac

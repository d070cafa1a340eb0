#!/usr/bin/env bash
# CPU probe of method.pseudo_background: the ceiling (the pose regressor's reading of the pseudo-samples,
# no GAN) for render / target backgrounds at view_scale 0.3 and 0.6, on N projected test heads with the
# bench profile's prior and step 1 (shortened, and 160 pseudo-samples per head, unless SHORT=' ').
# Usage (repository root, venv active): W=/tmp/bgprobe N=8 bash experiments/step2_follow/cpu_background_probe.sh
# (results: $W/ceiling.jsonl, timings: $W/marks)
set -euo pipefail
W=${W:-/tmp/bgprobe}; N=${N:-8}; PSTEPS=${PSTEPS:-300}; POSE=${POSE:-"--images 4000 --steps 400"}
G="python -m gan2shape.cli -q"; CKPT=data/stylegan2_heads64.pt
# the bench profile with shorter prior and step 1 (a 2-core CPU: 2.2 s per pose step, see README)
B="--set method.checkpoint=$CKPT --set method.profile=bench ${SHORT:---set method.profiles.bench.prior_iters=500 --set method.profiles.bench.step1_iters=[300,300] --set method.profiles.bench.collect_batches=10}"
mkdir -p $W; mark() { echo "== $* $SECONDS s" | tee -a $W/marks; }
$G make-heads --set heads.n_train=16 --set heads.n_test=$N --out $W/heads --device cpu; mark heads
$G project --set project.w_plus=false --set project.latent_prior=0.01 --set project.steps=$PSTEPS \
  --checkpoint $CKPT --images $W/heads/test.h5 --out $W/lat.h5 --device cpu; mark project
$G sample-instances $B --latents $W/lat.h5 --masks $W/heads/test.h5 --out $W/inst.h5 --device cpu
$G prior $B --instances $W/inst.h5 --out $W/shape.h5 --device cpu; mark prior
$G step1 $B --instances $W/inst.h5 --shape $W/shape.h5 --out $W/albedo.h5 --device cpu; mark step1
files=()
for vs in 0.3 0.6; do
  for bg in render target; do
    $G pseudo $B --set method.view_scale=$vs --set method.pseudo_background=$bg --albedo $W/albedo.h5 \
      --instances $W/inst.h5 --out $W/pseudo_${bg}_$vs.h5 --device cpu
    files+=("${bg}_$vs=$W/pseudo_${bg}_$vs.h5")
  done
done
mark pseudo
$G train-pose $POSE --out $W/pose.h5 --device cpu > $W/pose.log 2>&1; mark pose
python experiments/step2_follow/ceiling_background.py --instances $W/inst.h5 --pose $W/pose.h5 "${files[@]}" \
  | tee $W/ceiling.jsonl
grep -h "yaw" $W/pose.log | tail -2 || true

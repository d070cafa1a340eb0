#!/usr/bin/env bash
# Does an inversion encoder E pre-trained in joint pre-training make step 2's projected samples follow the
# requested turns better than a fresh E (method.joint_encoder)? A short probe for one H200 call (~4 min):
# a shortened joint run on NJ projected train heads (E's step-2 counts near the joint profile's; the
# depth/albedo steps cut), then two instance runs of N projected test heads from it, one with E from the
# joint run (enc) and one with a fresh E (fresh), at the bench counts except step 3 (cut to 50: only step
# 2's projected samples are measured), then experiments/method_accuracy/pose_follow.py on each. The SIDE / MAD of these
# runs are not benchmark numbers. Usage on the GPU machine: bash experiments/method_accuracy/gpu_encoder_follow.sh
# (results in $OUT: pose_follow_{enc,fresh}.json, logs).
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
W=${W:-/root/ef}; N=${N:-8}; NJ=${NJ:-64}; OUT=${OUT:-$W/out}; G="python3 -m gan2shape.cli -q"
J="--set method.mode=joint --set method.profile=joint --set method.profiles.joint.prior_iters=300
   --set method.profiles.joint.step1_iters=[150,30] --set method.profiles.joint.step2_iters=[400,50]
   --set method.profiles.joint.step3_iters=[150,30]"
B="--set method.profile=bench --set method.profiles.bench.step3_iters=[50,50]"
mkdir -p $W $OUT
t0=$SECONDS
$G make-heads --out $W/heads --set heads.n_train=$NJ --set heads.n_test=$N --device cuda > /dev/null
for s in train test; do
  $G project --checkpoint data/stylegan2_heads64.pt --images $W/heads/$s.h5 --out $W/lat_$s.h5 --device cuda \
    > $W/project_$s.log 2>&1 &
done
wait
for s in train test; do
  $G sample-instances --latents $W/lat_$s.h5 --masks $W/heads/$s.h5 --out $W/${s}_inst.h5 --device cuda > /dev/null
done
echo "inputs $((SECONDS - t0)) s"
$G reconstruct $J --instances $W/train_inst.h5 --out $W/joint --device cuda > $W/joint.log 2>&1
echo "joint $((SECONDS - t0)) s"
for t in enc fresh; do
  ( o=""; [ $t = fresh ] && o="--set method.joint_encoder=false"
    $G reconstruct $B $o --init $W/joint/stage2/shape.h5 --instances $W/test_inst.h5 --out $W/$t --device cuda
    echo "$t run $((SECONDS - t0)) s"
    python3 experiments/method_accuracy/pose_follow.py $B $o --run $W/$t --instances $W/test_inst.h5 --heads $W/heads \
      --latents $W/lat_test.h5 --out $OUT/pose_follow_$t.json --train-steps 1000 --train-images 10000
    echo "$t DONE $((SECONDS - t0)) s" ) > $W/$t.log 2>&1 &
done
wait
cp $W/joint.log $W/enc.log $W/fresh.log $OUT/ 2>/dev/null
for t in enc fresh; do
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[2], 'follow', d['follow'])" \
    $OUT/pose_follow_$t.json $t 2>/dev/null || { echo "$t failed:"; tail -5 $W/$t.log; }
done
echo "all $((SECONDS - t0)) s"

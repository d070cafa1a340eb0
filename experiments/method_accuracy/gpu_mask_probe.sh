#!/usr/bin/env bash
# Object masks for step 2/3 (issue 4 investigation; experiments/method_accuracy/results/method_probe/README.md): the same
# N projected test heads reconstructed from scratch (bench profile) without and with the heads' GT
# foreground masks in instances.h5 (the reference takes them from a parsing network). On the GPU:
#   bash experiments/method_accuracy/gpu_mask_probe.sh   (foreground, ~6 min; metrics under $OUT)
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
W=/root/w; N=${N:-20}; G="python3 -m gan2shape.cli -q"
mkdir -p $W
[ -f $W/heads/test.h5 ] || $G make-heads --out $W/heads --device cuda > /dev/null
$G project --checkpoint data/stylegan2_heads64.pt --images $W/heads/test.h5 --out $W/lat.h5 --limit $N --device cuda
$G sample-instances --latents $W/lat.h5 --out $W/plain/inst.h5 --device cuda
$G sample-instances --latents $W/lat.h5 --masks $W/heads/test.h5 --out $W/masked/inst.h5 --device cuda
for v in plain masked; do
  ( $G reconstruct --set method.profile=bench --instances $W/$v/inst.h5 --out $W/$v --device cuda > $W/$v.log 2>&1
    $G evaluate --test $W/heads/test.h5 --train $W/heads/train.h5 --pred $W/$v/stage1/shape.h5 --out $W/e_$v >> $W/$v.log 2>&1
    cp $W/e_$v/metrics.json $OUT/metrics_$v.json ) &
done
wait
for v in plain masked; do python3 -c "
import json;m=json.load(open('$OUT/metrics_$v.json'))
print('$v', {k: (round(r['side_x1e2_mean'],3), round(r['mad_mean'],2)) for k,r in m['rows'].items()})"; done

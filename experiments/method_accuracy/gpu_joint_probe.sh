#!/usr/bin/env bash
# Diagnostic GPU run of the method (issue 4 investigation); see experiments/method_accuracy/results/method_probe/README.md
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
W=/root/w; N=${N:-20}; NJ=${NJ:-200}; G="python3 -m gan2shape.cli -q"
mkdir -p $W; 
{
t0=$(date +%s)
[ -f $W/heads/test.h5 ] || $G make-heads --out $W/heads --device cuda
[ -f $W/lat_test.h5 ] || $G project --checkpoint data/stylegan2_heads64.pt --images $W/heads/test.h5 --out $W/lat_test.h5 --limit $N --device cuda
[ -f $W/lat_train.h5 ] || $G project --checkpoint data/stylegan2_heads64.pt --images $W/heads/train.h5 --out $W/lat_train.h5 --limit $NJ --device cuda
mkdir -p $W/joint $W/test
$G sample-instances --latents $W/lat_train.h5 --out $W/joint/inst.h5 --device cuda
$G sample-instances --latents $W/lat_test.h5 --out $W/test/inst.h5 --device cuda
echo "setup $(( $(date +%s) - t0 )) s"
$G reconstruct --set method.mode=joint --set method.profile=joint "$@" --instances $W/joint/inst.h5 --out $W/joint --device cuda
echo "joint $(( $(date +%s) - t0 )) s"
$G reconstruct --set method.profile=bench "$@" --init $W/joint/stage2/shape.h5 --instances $W/test/inst.h5 --out $W/test --device cuda
echo "test $(( $(date +%s) - t0 )) s"
$G evaluate --test $W/heads/test.h5 --train $W/heads/train.h5 --pred $W/test/stage1/shape.h5 --out $W/e_test
python3 -c "
import json;m=json.load(open('$W/e_test/metrics.json'))
for k,v in m['rows'].items(): print(k, round(v['side_x1e2_mean'],3), round(v['mad_mean'],2))"
python3 experiments/method_accuracy/viz_stage.py $W/test $W/viz_test.png
python3 experiments/method_accuracy/viz_stage.py $W/joint $W/viz_joint.png || true
echo DONE
} > $W/log 2>&1

#!/usr/bin/env bash
# Diagnostic GPU run of the method (issue 4 investigation); see experiments/method_accuracy/results/method_probe/README.md
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
W=/root/w; N=20; G="python3 -m gan2shape.cli -q"
mkdir -p $W/base
{
[ -f $W/heads/test.h5 ] || $G make-heads --out $W/heads --device cuda
[ -f $W/lat_test.h5 ] || $G project --checkpoint data/stylegan2_heads64.pt --images $W/heads/test.h5 --out $W/lat_test.h5 --limit $N --device cuda
$G sample-instances --latents $W/lat_test.h5 --out $W/base/inst.h5 --device cuda
run() { tag=$1; shift; mkdir -p $W/$tag; cp $W/base/inst.h5 $W/$tag/
  $G reconstruct --set method.profile=bench "$@" --instances $W/$tag/inst.h5 --out $W/$tag --device cuda > $W/$tag.log 2>&1
  $G evaluate --test $W/heads/test.h5 --pred $W/$tag/stage1/shape.h5 --out $W/e_$tag >/dev/null 2>&1
  python3 -c "import json;m=json.load(open('$W/e_$tag/metrics.json'))['rows']['prediction'];print('RESULT $tag', round(m['side_x1e2_mean'],3), round(m['mad_mean'],2))"
  python3 experiments/method_accuracy/viz_stage.py $W/$tag $W/viz_$tag.png > /dev/null; }
if [ "${SWEEP:-1}" = 1 ]; then
run A --set method.perceptual=none &
run B --set method.perceptual=none --set method.lam_smooth=0.5 &
run C --set method.perceptual=none --set method.lam_smooth=0.1 --set method.flip3_stage1=false &
run D --set method.perceptual=none --set method.lam_smooth=0.1 --set method.view_scale=0.6 &
wait
echo SWEEPDONE
for n in 1 8 32; do python3 benchmarks/bench_method_steps.py --device cuda --n $n --profile quick; done
else  # SWEEP=2: the latent offset's freedom
run E --set method.perceptual=none --set method.lam_smooth=0.1 --set method.f1_d=2 &
run F --set method.perceptual=none --set method.lam_smooth=0.1 --set method.lam_regular=0 &
wait
fi
echo DONE
} > $W/log 2>&1

#!/usr/bin/env bash
# Diagnostic GPU run of the method (issue 4 investigation); see experiments/method_accuracy/results/method_probe/README.md
# GPU probe: heads, project N test heads, bench-profile reconstruct, evaluate, per-step seconds.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
W=${W:-/root/w}; N=${N:-20}; G="python3 -m gan2shape.cli -q"
mkdir -p $W $OUT
t0=$(date +%s)
[ -f $W/heads/test.h5 ] || $G make-heads --out $W/heads --device cuda
$G project --checkpoint data/stylegan2_heads64.pt --images $W/heads/test.h5 --out $W/lat.h5 --limit $N --device cuda
$G sample-instances --latents $W/lat.h5 --out $W/inst.h5 --device cuda
echo "setup $(( $(date +%s) - t0 )) s"
for tag in "$@"; do
  case $tag in
    disc) SET="--set method.perceptual=discriminator";;
    none) SET="--set method.perceptual=none";;
    *) SET="--set $tag";;
  esac
  t1=$(date +%s)
  $G reconstruct --set method.profile=bench $SET --instances $W/inst.h5 --out $W/r_$tag --device cuda > $W/r_$tag.json
  echo "run $tag: $(( $(date +%s) - t1 )) s"
  python3 - $W/r_$tag <<'PY'
import sys, h5py, glob
for f in sorted(glob.glob(sys.argv[1] + "/stage*/*.h5")):
    with h5py.File(f) as h: print(f.split("/")[-2:], round(float(h.attrs.get("seconds", -1)), 1), "s")
PY
  $G evaluate --test $W/heads/test.h5 --train $W/heads/train.h5 --pred $W/r_$tag/stage1/shape.h5 --out $W/e_$tag > /dev/null
  cp $W/e_$tag/metrics.json $OUT/metrics_$tag.json
  python3 -c "import json;m=json.load(open('$W/e_$tag/metrics.json'));print('$tag', json.dumps(m)[:600])"
done

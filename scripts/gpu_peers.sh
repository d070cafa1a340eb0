#!/usr/bin/env bash
# The peer rows of Table 1 at real size on one GPU (docs/baselines.md): the heads (skipped when
# results/bench/heads holds them), train-supervised, train-unsup3d, predict, evaluate on all test heads
# and on the Table 1 run's first bench.n_test heads, then the training-speed benchmark. Paths are those
# of dvc.yaml's stages (results/bench/...); the small results (summaries, logs, evaluations, timeline)
# are copied to OUT_DIR. About 8 minutes on one H200 (estimated): each training call stops after its
# minutes (checkpoint written; a rerun of this script continues both from their checkpoints and
# re-predicts); params.yaml's step counts are estimates.
# Needs python3 with torch (CUDA), h5py, click, numpy, tqdm, pyyaml, pillow, imageio; no install needed.
#   bash scripts/gpu_peers.sh OUT_DIR [SUPERVISED_MINUTES=1.5] [UNSUP3D_MINUTES=3.5]
# A CPU check of the chain (tiny sizes): DEVICE=cpu OPTIONS="--set heads.n_train=16 ..." bash scripts/gpu_peers.sh OUT
set -euo pipefail
out=${1:?usage: bash scripts/gpu_peers.sh OUT_DIR [SUPERVISED_MINUTES] [UNSUP3D_MINUTES]}
sup_min=${2:-1.5}
u3d_min=${3:-3.5}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
dev=${DEVICE:-cuda}
opts=${OPTIONS:-}
g="python3 -m gan2shape.cli -q"
b=${BENCH_DIR:-results/bench}
mkdir -p "$out"
stamp() { echo "$(date -u +%T) $*" | tee -a "$out/timeline.txt"; }
n_test=$(python3 -c "from gan2shape.config import load_params; print(load_params('params.yaml')[0].bench.n_test)")
stamp "start on $dev ($(python3 -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA")'))"
if [ ! -f $b/heads/test.h5 ] || [ ! -f $b/heads/train.h5 ]; then
  $g make-heads $opts --out $b/heads --device $dev > "$out/make_heads.json"
fi
stamp "heads ready"
for peer in supervised unsup3d; do
  minutes=$sup_min
  [ "$peer" = unsup3d ] && minutes=$u3d_min
  mkdir -p "$out/$peer"
  $g train-$peer $opts --data $b/heads/train.h5 --out $b/peers/$peer --device $dev --max-minutes "$minutes" \
    > "$out/$peer/train.json"
  stamp "trained $peer: $(python3 -c "import json,sys; s=json.load(open(sys.argv[1])); print(f\"{s['steps']}/{s['total_steps']} steps, {s['seconds']:.0f} s, {s['img_per_s']:.0f} img/s\")" "$out/$peer/train.json")"
  $g predict $opts --checkpoint $b/peers/$peer/checkpoint.pt --images $b/heads/test.h5 --out $b/peers/$peer/test.h5 \
    --device $dev > "$out/$peer/predict.json"
  $g evaluate $opts --test $b/heads/test.h5 --train $b/heads/train.h5 --pred $b/peers/$peer/test.h5 \
    --out $b/eval/$peer/all > /dev/null
  $g evaluate $opts --test $b/heads/test.h5 --train $b/heads/train.h5 --pred $b/peers/$peer/test.h5 \
    --limit "$n_test" --out $b/eval/$peer/table1 > /dev/null
  cp $b/peers/$peer/log.jsonl "$out/$peer/"
  cp -r $b/eval/$peer/all $b/eval/$peer/table1 "$out/$peer/"
  stamp "evaluated $peer"
done
for peer in supervised unsup3d; do
  echo "== $peer, all test heads"; cat "$out/$peer/all/table.md"
  echo "== $peer, the first $n_test test heads (the Table 1 run's)"; cat "$out/$peer/table1/table.md"
done | tee "$out/tables.md"
if [ "$dev" != cpu ]; then
  # batch 64 is measured by the training runs themselves (train.json, log.jsonl): here batch 256
  timeout 45 python3 benchmarks/peer_train_speed.py --device $dev --batch-sizes 256 --steps 10 \
    > "$out/peer_train_speed.txt" 2>&1 || echo "(speed benchmark stopped: exit $?)" >> "$out/peer_train_speed.txt"
  cat "$out/peer_train_speed.txt"
fi
stamp done

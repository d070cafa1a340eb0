#!/usr/bin/env bash
# Recipe for the shipped default generator (data/stylegan2_heads64.pt), run on one GPU machine in
# phases, each one call of at most 10 minutes (the machine keeps /root/g2s between calls):
#   start   build the 64px heads on the GPU, time GAN training, start training in the background
#   poll    wait, print progress, export an intermediate generator to $OUT (insurance)
#   warm    build the heads, then continue training a shipped generator (INIT, default
#           data/stylegan2_heads64.pt) in the background: `train-gan --init` (fresh optimisers, the image
#           count goes on from the file's), up to KIMG (default 6000) thousand images, batch BATCH (256)
#   finish  stop training (SIGTERM writes a checkpoint), export g_ema + d in float16 as $OUT/NAME.pt
#           (NAME default stylegan2_heads64), project 50 held-out test heads, copy samples/logs/metrics
# Usage: bash scripts/gpu_ship_gan.sh start|warm|poll|finish [seconds-to-wait]
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
W=/root/g2s
OUT=${OUT:-/tmp/out}
mkdir -p "$W" "$OUT"
G2S="python3 -m gan2shape.cli -q"
NAME=${NAME:-stylegan2_heads64}
phase=$1
wait_s=${2:-0}

latest_samples() { ls "$W"/gan/samples_*.png 2>/dev/null | tail -1; }
progress() {
  tail -c 600 "$W/train.log" 2>/dev/null | tr '\r' '\n' | tail -3
  tail -1 "$W/gan/log.jsonl" 2>/dev/null
}

case "$phase" in
start)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c 'import torch; print("torch", torch.__version__)'
  /usr/bin/time -f "make-heads wall %e s" $G2S make-heads --out "$W/heads" --device cuda | tee "$OUT/make_heads_gpu.json"
  timeout 200 python3 benchmarks/gan_train_speed.py --device cuda --batch-sizes 64 128 256 --amp bf16 \
      --compile off --periods 3 2>&1 | tee "$OUT/gan_train_speed.txt"
  setsid nohup $G2S train-gan --data "$W/heads/train.h5" --out "$W/gan" --device cuda \
      --set gan.total_kimg=5000 --set gan.sample_every_kimg=200 > "$W/train.log" 2>&1 < /dev/null &
  echo "training started"
  ;;
warm)
  [ -f "$W/heads/train.h5" ] || $G2S make-heads --out "$W/heads" --device cuda > "$OUT/make_heads_gpu.json"
  setsid nohup $G2S train-gan --data "$W/heads/train.h5" --out "$W/gan" --device cuda \
      --init "${INIT:-data/stylegan2_heads64.pt}" --set gan.total_kimg=${KIMG:-6000} \
      --set gan.batch_size=${BATCH:-256} --set gan.sample_every_kimg=200 --set gan.checkpoint_every_kimg=500 > "$W/train.log" 2>&1 < /dev/null &
  echo "warm-start training started"
  ;;
poll)
  ;;
finish)
  pkill -TERM -f "gan2shape.cli -q train-gan" && sleep 20
  progress
  $G2S export-gan --checkpoint "$W/gan/checkpoint.pt" --out "$OUT/$NAME.pt" --half
  cp "$(latest_samples)" "$OUT/samples_final.png"; cp "$W/gan/log.jsonl" "$OUT/train_log.jsonl"
  cp "$W/heads/contact_sheet.png" "$OUT/heads_contact_sheet_gpu.png"
  /usr/bin/time -f "project wall %e s" $G2S project --checkpoint "$OUT/$NAME.pt" \
      --images "$W/heads/test.h5" --out "$W/latents_test50.h5" --limit 50 --device cuda | tee "$OUT/project_test50.json"
  python3 - "$W/latents_test50.h5" "$OUT/project_test50_psnr.json" <<'PY'
import json, sys
from gan2shape.artifacts import read_artifact
with read_artifact(sys.argv[1], kind="latents") as art:
    psnr = art.array("psnr")
    out = {"n": int(psnr.size), "psnr_mean": float(psnr.mean()), "psnr_min": float(psnr.min()),
           "psnr_max": float(psnr.max()), "seconds": art.attrs.get("seconds"), "ids": art.ids,
           "psnr": [round(float(p), 3) for p in psnr]}
json.dump(out, open(sys.argv[2], "w"), indent=1)
print({k: v for k, v in out.items() if k not in ("ids", "psnr")})
PY
  exit 0
  ;;
esac
# start and poll: keep the machine busy (it is given back when idle) while training runs
end=$((SECONDS + wait_s))
while [ $SECONDS -lt $end ]; do sleep 60; echo "--- $(date +%T)"; progress; done
if [ "$phase" = poll ] && [ -f "$W/gan/checkpoint.pt" ]; then
  $G2S export-gan --checkpoint "$W/gan/checkpoint.pt" --out "$OUT/${NAME}_mid.pt" --half
  cp "$(latest_samples)" "$OUT/samples_mid.png"
fi
exit 0

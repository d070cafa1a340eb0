#!/usr/bin/env bash
# The benchmark's DVC pipeline (dvc.yaml: Table 1, Table 2, perceptual ablation) on the GPU machine.
# That machine has python3.12, torch (CUDA), h5py, click, pyyaml, numpy, tqdm, imageio and pillow,
# no DVC and no network: DVC is installed from the wheels in .whl/ (git-ignored; carry it), made
# here with
#   python3 tools/dvc_wheels.py pins      # NAME==VERSION lines, then per line:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 ... -d .whl NAME==VERSION
#   python3 tools/dvc_wheels.py check .whl
# Two pins had no CPython 3.12 wheel: antlr4-python3-runtime==4.9.3 (sdist only: built here with
# `pip wheel --no-deps --no-binary antlr4-python3-runtime -w .whl antlr4-python3-runtime==4.9.3`)
# and orjson==3.8.3 (replaced by orjson 3.13.0; dvc-data asks for orjson>=3,<4).
# DVC runs in a copy of the working tree at $W (default /root/g2s-dvc), so that the next call's copy
# of the tree cannot touch dvc.lock or the outputs while a run goes on; the machine keeps $W while
# it stays warm, and a new `start` continues where the last one stopped (DVC skips finished stages).
#
# Usage: bash tools/gpu_dvc_repro.sh start [S] | poll [S] | collect | run
#   start [S]  (then collect, as poll) copy the tree to $W (code, params, dvc.yaml; not results), install DVC, start
#              the pipeline in the background, wait up to S seconds (default 540): with PARALLEL=1
#              (default) `python3 scripts/dvc_parallel.py $PAR_ARGS $DVC_FILE` (independent GPU
#              stages side by side, each recorded in dvc.lock as it finishes, then `dvc status`
#              must report the pipeline up to date); PARALLEL=0: plain `dvc repro $DVC_FILE`
#   poll [S]   wait up to S seconds more for it, printing progress, then collect (so that what has
#              finished comes back even if the machine goes away before the next call)
#   collect    into $OUT: dvc.lock, `dvc metrics show` (metrics.md), the log, a tarball of the report,
#              evaluations and stage logs (bench_report.tar.gz), and one of heads/test.h5 and
#              latents/test.h5 (bench_inputs.tar.gz), the inputs a second machine needs to go on
#   run        start, wait for the end however long it takes, then collect (one call, small runs)
# Env: DVC_FILE (default dvc.yaml; bench-small/dvc.yaml for the CPU variant), REPORT (default
# results/bench/report, or results/bench-small/report), W, OUT (default $W/out), PARALLEL, PAR_ARGS
# (default: 3 GPU slots, the 50-head test run takes 2, file-only stages none; joint and test first).
# ONLY: space-separated stage globs (dvc_parallel --only): run just these; the status check at the end
# is skipped (the stages left out are not up to date on this machine).
# Going on on a second machine (the whole benchmark takes more GPU time than one machine is held):
# commit the first machine's dvc.lock to the repository, unpack its bench_report.tar.gz and
# bench_inputs.tar.gz here (results/bench/eval, heads/test.h5, latents/test.h5; git-ignored), then
#   ONLY="prior@flat eval_prior@flat tables" bash tools/gpu_dvc_repro.sh start 500
# with carry [.whl, results/bench]: a fresh $W takes the repository's dvc.lock and the carried
# results/bench, and only the named stages run (each needs just heads/test.h5 and latents/test.h5).
# The gan stage is frozen in dvc.yaml: the shipped data/stylegan2_heads64.pt is used, not retrained.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 DVC_NO_ANALYTICS=1 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
PARALLEL=${PARALLEL:-1}
# GPU slots by memory on one H200 (measured 2026-11-24, float16 artifacts): a 20-head run (prior,
# perceptual) peaks at ~30-37 GB, the joint run over 200 train heads ~43 GB, the 50-head test run ~92 GB;
# 4 slots (joint + three 20-head runs) ran out of memory, so 3 slots and the test run takes 2.
# project_train, joint and test take 2 slots, so that the Table 1 chain (heads -> project_train -> joint
# -> test) shares the GPU with one other run only and finishes well within the machine's time (each of
# them hands its 2 slots to the next; with project_train at 1, two prior runs would take the slots
# first and joint would wait for one of them to end).
PAR_ARGS=${PAR_ARGS:---slots 3 --weight project_train=2 --weight joint=2 --weight test=2 --weight 'eval*=0' --weight tables=0 --weight heads=0 --first joint --first test --first 'prior@*'}
ONLY=${ONLY:-}
set -f; for g in $ONLY; do PAR_ARGS="$PAR_ARGS --only '$g'"; done; set +f
SRC=$PWD
W=${W:-/root/g2s-dvc}
OUT=${OUT:-$W/out}
DVC_FILE=${DVC_FILE:-dvc.yaml}
if [ "$DVC_FILE" = dvc.yaml ]; then REPORT=${REPORT:-results/bench/report}; else REPORT=${REPORT:-results/bench-small/report}; fi
LOCK=$(dirname "$DVC_FILE")/dvc.lock; LOCK=${LOCK#./}
LOG=$W/repro.log
phase=${1:-run}
wait_s=${2:-540}
mkdir -p "$W" "$OUT"

setup() {
  # DVC: from the wheels when this python has none (the GPU machine); as installed otherwise
  if ! python3 -c 'import dvc' 2>/dev/null; then
    [ -d /tmp/site/dvc ] || {
      python3 "$SRC/tools/dvc_wheels.py" check "$SRC/.whl" &&
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$SRC"/.whl/*.whl
    } || { echo "installing DVC from .whl/ failed (was .whl carried?)"; exit 1; }
    export PYTHONPATH=/tmp/site
  fi
  export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$W
  # `gan2shape` for the stages' commands: this python on the copied code
  mkdir -p "$W/.bin"
  printf '#!/bin/sh\nexec python3 -m gan2shape.cli "$@"\n' > "$W/.bin/gan2shape"
  chmod +x "$W/.bin/gan2shape"
  export PATH=$W/.bin:$PATH
}

copy_tree() {
  # code, params and pipeline files; results/, the lock and the wheels stay as they are in $W
  tar -C "$SRC" --exclude=./results --exclude=./.whl --exclude=./.git --exclude=./.dvc/tmp --exclude=./.dvc/cache \
      --exclude="./$LOCK" --exclude='*/__pycache__' -cf - . | tar -C "$W" -xf -
  # a fresh $W starts from the repository's dvc.lock and any carried results/bench (a second machine
  # going on from the first one's record); a warm one keeps its own
  [ -e "$W/$LOCK" ] || [ ! -e "$SRC/$LOCK" ] || cp "$SRC/$LOCK" "$W/$LOCK"
  if [ "$DVC_FILE" = dvc.yaml ] && [ ! -e "$W/results/bench" ] && [ -d "$SRC/results/bench" ]; then
    mkdir -p "$W/results" && cp -a "$SRC/results/bench" "$W/results/bench"
  fi
  if [ ! -e "$W/.git" ] && [ ! -e "$W/.dvc/config.local" ]; then
    if command -v git >/dev/null; then git -C "$W" init -q; else printf '[core]\n    no_scm = true\n' > "$W/.dvc/config.local"; fi
  fi
}

# running until the wrapper writes repro.rc (the pid of `setsid` need not be the pipeline's: setsid forks)
running() { [ -f "$W/repro.pid" ] && [ ! -f "$W/repro.rc" ] && pgrep -f '[d]vc_parallel.py|[d]vc repro' > /dev/null; }

progress() {
  grep -a "Running stage\|Stage .* didn't change\|ERROR\|\] start\|\] done\|FAILED" "$LOG" 2>/dev/null | tail -6
  df -h "$W" | awk 'NR==2{print "disk free: " $4}'
  tail -c 800 "$LOG" 2>/dev/null | tr '\r' '\n' | grep -av '^\s*$' | tail -3
}

wait_for() {  # $1 seconds at most (0: until the end)
  local end=$((SECONDS + $1))
  while running && { [ "$1" -eq 0 ] || [ $SECONDS -lt $end ]; }; do
    sleep 30; echo "--- $(date +%T)"; progress
  done
  if running; then echo "dvc repro still running (pid $(cat "$W/repro.pid")): poll again"; return 2; fi
  echo "dvc repro finished: exit $(cat "$W/repro.rc" 2>/dev/null || echo '?')"; tail -5 "$LOG"
  [ "$(cat "$W/repro.rc" 2>/dev/null)" = 0 ]
}

start() {
  if running; then echo "dvc repro already running"; return 0; fi
  copy_tree
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  echo "dvc $(python3 -m dvc --version), $DVC_FILE in $W; disk: $(df -h "$W" | awk 'NR==2{print $4}') free"
  rm -f "$W/repro.rc"
  if [ "$PARALLEL" = 1 ] && [ -n "$ONLY" ]; then
    run_cmd="python3 scripts/dvc_parallel.py $PAR_ARGS '$DVC_FILE'"
  elif [ "$PARALLEL" = 1 ]; then
    run_cmd="python3 scripts/dvc_parallel.py $PAR_ARGS '$DVC_FILE' && python3 -m dvc status '$DVC_FILE' | tee dvc_status.txt && grep -q 'up to date' dvc_status.txt"
  else
    run_cmd="python3 -m dvc repro '$DVC_FILE'"
  fi
  echo "running: $run_cmd"
  (cd "$W" && setsid nohup bash -c "( $run_cmd ) > '$LOG' 2>&1; echo \$? > repro.rc" \
      < /dev/null > /dev/null 2>&1 & echo $! > "$W/repro.pid")
  sleep 2
}

collect() {
  (cd "$W" && python3 -m dvc metrics show --md "$REPORT/metrics" > "$OUT/metrics.md" 2>&1)
  cp "$W/$LOCK" "$OUT/dvc.lock" 2>/dev/null
  (cd "$W" && tar -czf "$OUT/bench_report.tar.gz" $(ls -d "$LOCK" "$REPORT" "$(dirname "$REPORT")/eval" logs/dvc 2>/dev/null))
  (cd "$W" && tar -czf "$OUT/bench_inputs.tar.gz" $(ls -d "$(dirname "$REPORT")"/heads/test.h5 \
      "$(dirname "$REPORT")"/latents/test.h5 2>/dev/null))
  cp "$LOG" "$OUT/repro.log" 2>/dev/null
  ls -la "$OUT"
  cat "$OUT/metrics.md"
}

setup
case "$phase" in
start) start; wait_for "$wait_s"; rc=$?; collect > /dev/null; exit $rc ;;
poll) wait_for "$wait_s"; rc=$?; collect > /dev/null; exit $rc ;;
collect) collect ;;
run) start; wait_for 0; rc=$?; collect; exit $rc ;;
*) echo "usage: $0 start [S] | poll [S] | collect | run"; exit 2 ;;
esac

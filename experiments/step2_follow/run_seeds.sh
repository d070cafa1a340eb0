#!/usr/bin/env bash
# run_short.sh for several pipelines and method seeds side by side, detached, so that it may outlast one
# GPU call.
#   bash experiments/step2_follow/run_seeds.sh start LIMIT   # launch, then wait up to LIMIT s (default 570)
#   bash experiments/step2_follow/run_seeds.sh poll LIMIT    # wait again (a following call on the same machine)
# PIPES: one pipeline per line, "name@options@variants": options go to every command of the pipeline
# (its own projection, prior, step 1 and pseudo-samples), variants are run_short.sh's VARIANTS (step 2
# onwards, sharing the pipeline's stages). Default: one pipeline "a" with run_short.sh's VARIANTS.
# SEEDS (default "0 1"): method.seed of each pipeline. Each wait ends by copying what has finished
# (summary, marks, bench and eval JSON, logs) into $OUT/seeds.tgz as <pipeline>_s<seed>/.
# Other run_short.sh variables (N, STEP3, BENCH_ARGS...) pass through.
set -uo pipefail
mode=$1; limit=${2:-570}; SEEDS=${SEEDS:-"0 1"}; R=${R:-/root/s2seeds}
PIPES=${PIPES:-"a@@${VARIANTS:-def=0.3:;ref=0.3:--set method.offset=mapping --set method.encoder_init=null}"}
runs() { echo "$PIPES" | while IFS=@ read -r p o v; do for s in $SEEDS; do echo "${p}_s$s"; done; done; }
if [ "$mode" = start ]; then
  echo "$PIPES" | while IFS=@ read -r p o v; do
    for s in $SEEDS; do
      w=$R/${p}_s$s; mkdir -p $w
      W=$w OUT=$w/out X="${X:-} $o --set method.seed=$s" VARIANTS="$v" DEADLINE=3000 \
        setsid nohup bash experiments/step2_follow/run_short.sh > $w.driver.log 2>&1 < /dev/null &
    done
  done
fi
done_all() { for r in $(runs); do [ -f $R/$r/out/results.tgz ] || return 1; done; }
while ! done_all && [ $SECONDS -lt $limit ]; do sleep 5; done
for r in $(runs); do
  w=$R/$r; o=$OUT/$r; mkdir -p $o
  cp $w/out/results.tgz $w/out/summary.md $w/marks $w/*.log $o/ 2>/dev/null
  for v in $(ls $w/v 2>/dev/null); do
    for f in bench/step2_bench.json eval/metrics.json eval/per_image.json; do
      [ -f $w/v/$v/$f ] && cp $w/v/$v/$f $o/${v}_$(basename $f)
    done
  done
  echo "== $r"; cat $w/marks 2>/dev/null; cat $w/out/summary.md 2>/dev/null
done
# many small files in one archive ($OUT brings back at most 8 files)
(cd $OUT && tar czf seeds.tgz $(runs) && rm -rf $(runs))
grep -l "Error\|Traceback" $R/*/*.log 2>/dev/null

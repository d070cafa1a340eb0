# Shared by the variant probe scripts (gpu_variant_probe.sh, gpu_scratch_probe.sh); source it after
# setting VARIANTS="name=--set k=v --set k=v;name2=..." and W (the work folder).
# names: the variant names, one per line; opts NAME: that variant's options.
names() { echo "$VARIANTS" | tr ';' '\n' | cut -d= -f1; }
opts() { echo "$VARIANTS" | tr ';' '\n' | grep "^$1=" | cut -d= -f2-; }
# start_detached SCRIPT: list the variants, then run `bash SCRIPT _run` detached (setsid), its output
# in $W/log, so that it outlives the call that started it.
start_detached() {
  mkdir -p "$W"
  for v in $(names); do echo "$v: $(opts "$v")"; done
  setsid nohup bash "$1" _run > "$W/log" 2>&1 < /dev/null &
  echo started
}

# Shared by the variant probe scripts (gpu_variant_probe.sh, gpu_scratch_probe.sh); source it after
# setting VARIANTS="name=--set k=v --set k=v;name2=..." and W (the work folder).
# names [LIST]: the names of LIST ("name=opts;name2=opts", default $VARIANTS), one per line;
# opts NAME [LIST]: that name's options.
names() { echo "${1-$VARIANTS}" | tr ';' '\n' | cut -d= -f1; }
opts() { echo "${2-$VARIANTS}" | tr ';' '\n' | grep "^$1=" | cut -d= -f2-; }
# start_detached SCRIPT: list the variants, then run `bash SCRIPT _run` detached (setsid), its output
# in $W/log, so that it outlives the call that started it.
start_detached() {
  mkdir -p "$W"
  for v in $(names); do echo "$v: $(opts "$v")"; done
  setsid nohup bash "$1" _run > "$W/log" 2>&1 < /dev/null &
  echo started
}

#!/usr/bin/env bash
# Wall time, CPU time, peak memory and disk of the README's main job on a fresh clone.
# Usage (from the repository root, in the README's venv): bash benchmarks/main_job.sh [OUT_FILE]
# Clones HEAD into a temp folder, runs `snakemake --cores 4 --resources gpu=1` there with the package
# of that clone (PYTHONPATH), and prints/writes the numbers; the clone is deleted afterwards.
set -euo pipefail
command -v snakemake > /dev/null || { echo "snakemake not found: activate the README's venv (source .venv/bin/activate)" >&2; exit 1; }
out=${1:-benchmarks/results/main_job_$(hostname -s).txt}
repo=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/clone"
cd "$work/clone"
start=$(date +%s)
started=$(date -u +%Y-%m-%dT%H:%MZ)
load=$(cut -d' ' -f1-3 /proc/loadavg)
PYTHONPATH="$work/clone" /usr/bin/time -v -o "$work/time.txt" snakemake --cores 4 --resources gpu=1 > "$work/terminal.txt" 2>&1 \
    || { tail -20 "$work/terminal.txt" >&2; exit 1; }
end=$(date +%s)
{
    echo "main job: snakemake --cores 4 --resources gpu=1 on a fresh clone of $(git rev-parse --short HEAD)"
    echo "machine: $(nproc) cores, $(python -c 'import torch; print("torch", torch.__version__, "cuda" if torch.cuda.is_available() else "cpu")')"
    echo "started: $started, load average before the start: $load"
    echo "wall: $((end - start)) s"
    grep -E "User time|System time|Maximum resident" "$work/time.txt" | sed 's/^\t//'
    echo "results/: $(du -sh results | cut -f1) ($(du -sb results | cut -f1) bytes)"
    echo "largest files:"
    find results -type f -printf '%s %p\n' | sort -n | tail -5 | awk '{printf "  %.1f MB %s\n", $1 / 1e6, $2}'
    echo "terminal (last 3 lines):"
    tail -3 "$work/terminal.txt" | sed 's/^/  /'
} | tee "$repo/$out"

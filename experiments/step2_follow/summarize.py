"""The table of run.sh: per variant, the step-2 bench's follow fits and the one-stage run's SIDE / MAD.

Usage: python3 summarize.py WORK NAME... (reads WORK/v/<name>/bench/step2_bench.json, eval/metrics.json
and eval/per_image.json). Prints markdown: one row per variant, then paired differences (mean +- standard
error over the instances) of each variant against the first variant on the same instance set ('ref' for
wplus, 'wp_ref' for wp): per-instance encoder follow slope, SIDE (x1e-2) and MAD (deg).
"""

import json
import math
import sys
from pathlib import Path

work, names = Path(sys.argv[1]), sys.argv[2:]


def load(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def paired(a, b):
    d = [x - y for x, y in zip(a, b) if x is not None and y is not None]
    if len(d) < 2:
        return "-"
    m = sum(d) / len(d)
    se = math.sqrt(sum((x - m) ** 2 for x in d) / (len(d) - 1) / len(d))
    return f"{m:+.3f} +- {se:.3f}"


rows, data = [], {}
for v in names:
    b = load(work / "v" / v / "bench" / "step2_bench.json")
    m = load(work / "v" / v / "eval" / "metrics.json")
    p = load(work / "v" / v / "eval" / "per_image.json")
    data[v] = (b, m, p)
    if b is None or "run" not in b:
        rows.append(f"| {v} | failed | | | | | | | |")
        continue
    run = b["run"]
    pred = (m or {}).get("rows", {}).get("prediction", {})
    free = f"{run['ratio_free']:.3f}" if run.get("ratio_free") is not None else "-"
    gt = b.get("gt_turned", {})
    gt_free = f" (free {gt['ratio_free']:.3f})" if gt.get("ratio_free") is not None else ""
    gts = f"{gt['ratio_encoder']:.3f}{gt_free}" if gt else "-"
    rows.append(
        f"| {v} | {b['method']['offset']} | {b['method']['view_scale']} | {b['edit']['gain']:.3f} | "
        f"{run['ceiling']['slope']:.3f} | {run['encoder']['slope']:.3f} (r {run['encoder']['r']:.2f}) | "
        f"{run['ratio_encoder']:.3f} | {free} | {gts} | "
        f"{pred.get('side_x1e2_mean', float('nan')):.3f} / {pred.get('mad_mean', float('nan')):.2f} |"
    )
print(
    "| variant | offset | view_scale | edit gain | ceiling slope | E slope | E ratio | free ratio | GT-turned E ratio |"
    " SIDE / MAD |"
)
print("|---|---|---|---|---|---|---|---|---|---|")
print("\n".join(rows))
print("\nPaired against the reference variant of the same instances (mean +- s.e. over instances):\n")
print("| variant | vs | E follow slope | SIDE x1e-2 | MAD deg |")
print("|---|---|---|---|---|")
for v in names:
    base = "wp_ref" if v.startswith("wp") else "ref"
    if v == base or base not in data or data[v][0] is None or data[base][0] is None:
        continue
    (b, _, p), (bb, _, pb) = data[v], data[base]
    slope = paired(b["run"]["encoder"]["per_instance_slope"], bb["run"]["encoder"]["per_instance_slope"])
    if p and pb:
        side = paired([x * 100 for x in p["prediction"]["side"]], [x * 100 for x in pb["prediction"]["side"]])
        mad = paired(p["prediction"]["mad_deg"], pb["prediction"]["mad_deg"])
    else:
        side = mad = "-"
    print(f"| {v} | {base} | {slope} | {side} | {mad} |")

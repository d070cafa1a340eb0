"""Pick the w-space projection of run.sh: the highest edit gain at a mean PSNR >= 28 dB.

Usage: python3 pick_projection.py WORK NAME... (reads WORK/edit_<name>/step2_bench.json and
WORK/lat_<name>.h5). Prints one JSON object: every projection's PSNR, edit gain and typicality, and
'pick', chosen among the names other than 'wplus' (the reference's free w+); when none reaches 28 dB,
the one with the highest PSNR.
"""

import json
import sys
from pathlib import Path

import h5py

MIN_PSNR = 28.0

work, names = Path(sys.argv[1]), sys.argv[2:]
rows = {}
for name in names:
    try:
        bench = json.loads((work / f"edit_{name}" / "step2_bench.json").read_text())
        with h5py.File(work / f"lat_{name}.h5") as f:
            psnr = float(f["psnr"][:].mean())
    except (OSError, KeyError, ValueError) as exc:
        rows[name] = {"error": str(exc)}
        continue
    rows[name] = {
        "psnr": round(psnr, 2),
        "edit_gain": bench["edit"]["gain"],
        "edit_gain_std": bench["edit"]["gain_std"],
        **bench["typicality"],
    }
cands = {k: v for k, v in rows.items() if k != "wplus" and "error" not in v}
good = {k: v for k, v in cands.items() if v["psnr"] >= MIN_PSNR}
if good:
    pick = max(good, key=lambda k: good[k]["edit_gain"])
elif cands:
    pick = max(cands, key=lambda k: cands[k]["psnr"])
else:
    pick = "wplus"
print(json.dumps({"pick": pick, "min_psnr": MIN_PSNR, "projections": rows}, indent=1))

"""Where do a run's errors sit? SIDE, MAD and relief by the heads' true |yaw| (issue 4 investigation).

Usage: python3 scripts/probe/error_by_yaw.py HEADS_TEST.h5 PER_IMAGE.json [PER_IMAGE.json ...]
(PER_IMAGE.json: `gan2shape evaluate`'s per_image.json, rows 'prediction' and the baselines, per-head
'side', 'mad_deg' and, for the prediction, 'relief_ratio', matched to the heads' GT views by id.)
Prints one JSON line per file: per |yaw| bin (degrees, edges BINS) the number of
heads, the mean SIDE (x1e-2) and MAD of the prediction and of each baseline row, and the prediction's
median relief ratio; plus Pearson r of |yaw| with the prediction's SIDE and relief.
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np

from gan2shape.artifacts import read_artifact

DEG = 180.0 / math.pi
BINS = (0.0, 15.0, 30.0, 90.0)


def by_yaw(abs_yaw: np.ndarray, rows: dict) -> dict:
    """abs_yaw: (N,) degrees; rows: evaluate's per-image rows, each with 'side' and 'mad_deg' of length N.
    Returns {"<lo>-<hi>": {"n": .., "<row>": [SIDE x1e-2, MAD], "relief_median": ..}}."""
    out = {}
    for lo, hi in zip(BINS[:-1], BINS[1:]):
        m = (abs_yaw >= lo) & (abs_yaw < hi)
        cell: dict = {"n": int(m.sum())}
        if m.any():
            for name, row in rows.items():
                side = np.asarray(row["side"], float)[m] * 100
                cell[name] = [round(float(side.mean()), 3), round(float(np.asarray(row["mad_deg"], float)[m].mean()), 2)]
            cell["relief_median"] = round(float(np.median(np.asarray(rows["prediction"]["relief_ratio"], float)[m])), 2)
        out[f"{lo:g}-{hi:g}"] = cell
    return out


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    heads, files = sys.argv[1], sys.argv[2:]
    with read_artifact(heads, "heads") as art:
        gt_yaw, gt_ids = np.abs(art.array("view")[:, 1]) * DEG, list(art.ids)
    for path in files:
        with open(path) as fh:
            rows = json.load(fh)
        ids = rows["prediction"]["ids"]
        missing = [i for i in ids if i not in gt_ids]
        if missing:
            sys.exit(f"{path}: ids {missing[:3]} are not in {heads}; give the heads file the run was evaluated on")
        yaw = gt_yaw[[gt_ids.index(i) for i in ids]]
        pred = rows["prediction"]
        print(json.dumps({
            "file": path, "n": len(ids),
            "r_absyaw_side": round(float(np.corrcoef(yaw, pred["side"])[0, 1]), 2),
            "r_absyaw_relief": round(float(np.corrcoef(yaw, pred["relief_ratio"])[0, 1]), 2),
            "bins": by_yaw(yaw, {k: v for k, v in rows.items() if isinstance(v, dict) and "side" in v}),
        }))


if __name__ == "__main__":
    main()

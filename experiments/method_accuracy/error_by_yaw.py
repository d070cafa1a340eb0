"""Where do a run's errors sit? SIDE, MAD and relief by the heads' true |yaw| (issue 4 investigation).

Usage: python3 experiments/method_accuracy/error_by_yaw.py HEADS_TEST.h5 PER_IMAGE.json [PER_IMAGE.json ...]
(PER_IMAGE.json: `gan2shape evaluate`'s per_image.json, rows 'prediction' and the baselines, per-head
'side', 'mad_deg' and, for the prediction, 'relief_ratio', matched to the heads' GT views by id.)
Prints one JSON line per file: per |yaw| bin (degrees, edges BINS) the number of
heads, the mean SIDE (x1e-2) and MAD of the prediction and of each baseline row, and the prediction's
median relief ratio; plus Pearson r of |yaw| with the prediction's SIDE and relief.
Where the prediction row has the view errors (a shape artifact's 'view_err_deg'), each bin also has
'yaw_err' (the mean |yaw error|, degrees) and 'trade_err': the mean yaw error that the relief alone
explains under the relief-rotation trade, |yaw| - asin(sin|yaw| / relief) (a head d times as deep
turned so that d sin(yaw') = sin(yaw) re-renders about the same); and, where it has the signed views
('view_deg', 'gt_view_deg'; evaluate writes them since the view gains), 'yaw_gain': the slope through 0
of predicted on GT yaw (evaluate.run.angle_gain; 1 = right scale, < 1 = under-turned).
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np

from gan2shape.artifacts import read_artifact
from gan2shape.evaluate.run import angle_gain

DEG = 180.0 / math.pi
BINS = (0.0, 15.0, 30.0, 90.0)


def by_yaw(abs_yaw: np.ndarray, rows: dict) -> dict:
    """abs_yaw: (N,) degrees; rows: evaluate's per-image rows, each with 'side' and 'mad_deg' of length N.
    Returns {"<lo>-<hi>": {"n": .., "<row>": [SIDE x1e-2, MAD], "relief_median": ..}}, plus 'yaw_err',
    'trade_err' and 'yaw_gain' where the prediction row has what they need (module docstring)."""
    pred = rows["prediction"]
    relief = np.asarray(pred["relief_ratio"], float)
    out = {}
    for lo, hi in zip(BINS[:-1], BINS[1:]):
        m = (abs_yaw >= lo) & (abs_yaw < hi)
        cell: dict = {"n": int(m.sum())}
        if m.any():
            for name, row in rows.items():
                side = np.asarray(row["side"], float)[m] * 100
                cell[name] = [
                    round(float(side.mean()), 3),
                    round(float(np.asarray(row["mad_deg"], float)[m].mean()), 2),
                ]
            cell["relief_median"] = round(float(np.median(relief[m])), 2)
            if "view_err_deg" in pred:
                cell["yaw_err"] = round(float(np.asarray(pred["view_err_deg"], float)[m, 1].mean()), 1)
                turned = np.degrees(np.arcsin(np.clip(np.sin(np.radians(abs_yaw[m])) / relief[m], -1.0, 1.0)))
                cell["trade_err"] = round(float((abs_yaw[m] - turned).mean()), 1)
            if "view_deg" in pred and "gt_view_deg" in pred:
                yaw_pred, yaw_gt = (np.asarray(pred[k], float)[m, 1] for k in ("view_deg", "gt_view_deg"))
                cell["yaw_gain"] = round(angle_gain(yaw_pred, yaw_gt), 2)
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
        print(
            json.dumps(
                {
                    "file": path,
                    "n": len(ids),
                    "r_absyaw_side": round(float(np.corrcoef(yaw, pred["side"])[0, 1]), 2),
                    "r_absyaw_relief": round(float(np.corrcoef(yaw, pred["relief_ratio"])[0, 1]), 2),
                    "bins": by_yaw(yaw, {k: v for k, v in rows.items() if isinstance(v, dict) and "side" in v}),
                }
            )
        )


if __name__ == "__main__":
    main()

"""How well does each run's step-1 view match the targets' true pose? (issue 4 investigation)

Usage: python3 experiments/method_accuracy/step1_pose.py HEADS_TEST.h5 RUN [RUN ...]
(RUN: a `gan2shape reconstruct` output folder, whose stage1/albedo.h5 is read, or an albedo.h5 itself; its
'view' is compared with the heads' GT views by instance id.) Prints one JSON line per run: least-squares
slope of predicted on GT, Pearson r and mean |difference| (degrees) for yaw and pitch, and the spread of
the predictions.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from gan2shape.artifacts import read_artifact

DEG = 180.0 / math.pi


def compare(x: np.ndarray, y: np.ndarray) -> dict:
    xc, yc = x - x.mean(), y - y.mean()
    return {
        "slope": round(float((xc * yc).sum() / max((xc * xc).sum(), 1e-12)), 3),
        "r": round(float(np.corrcoef(x, y)[0, 1]), 3) if y.std() > 0 else 0.0,
        "mean_abs_diff_deg": round(float(np.abs(y - x).mean()), 2),
        "pred_std_deg": round(float(y.std()), 2),
        "n": int(x.size),
    }


def main() -> None:
    heads, runs = sys.argv[1], sys.argv[2:]
    with read_artifact(heads, "heads") as art:
        gt_view, gt_ids = art.array("view"), list(art.ids)
    for run in runs:
        path = Path(run) if Path(run).is_file() else Path(run) / "stage1" / "albedo.h5"
        with read_artifact(path, "albedo") as art:
            view, ids = art.array("view"), list(art.ids)
        gt = gt_view[[gt_ids.index(i) for i in ids]]
        print(
            json.dumps(
                {
                    "run": run,
                    "yaw": compare(gt[:, 1] * DEG, view[:, 1] * DEG),
                    "pitch": compare(gt[:, 0] * DEG, view[:, 0] * DEG),
                }
            )
        )


if __name__ == "__main__":
    main()

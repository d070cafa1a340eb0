"""The step-2 bench's ceiling alone: how far the pose regressor reads a run's pseudo-samples as
turned, against the yaw change they were asked for (no GAN, no E). A cheap first look at changes to
the pseudo-samples themselves (method.pseudo_background, view_scale) that runs on a CPU.

Usage: python experiments/step2_follow/ceiling_background.py --instances inst.h5 --pose pose.h5 \
           NAME=pseudo.h5 [NAME=pseudo.h5 ...]
Prints one JSON line per file: the pooled slope and r, the within-head slope and r, and the mean and
standard error of the per-head slopes; and, for each file after the first, the paired difference of
per-head slopes against the first.
"""

from __future__ import annotations

import argparse
import json
import math

from gan2shape.artifacts import read_artifact
from gan2shape.diagnose.step2 import follow
from gan2shape.evaluate.pose import DEG, load_pose_regressor
from gan2shape.method.instances import read_instances


def mean_se(values: list[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1) / len(values))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", required=True)
    ap.add_argument("--pose", required=True)
    ap.add_argument("pseudo", nargs="+", help="NAME=path of a 'pseudo' artifact of these instances")
    args = ap.parse_args()
    pose, _ = load_pose_regressor(args.pose)
    first = inst = None
    for item in args.pseudo:
        name, path = item.split("=", 1)
        with read_artifact(path, "pseudo") as art:
            pseudo = art.tensor("image").float()
            requested = art.tensor("view_delta")[..., 1].float() * DEG
            ids = list(art.ids)
        if inst is None:  # the targets, once, at the pseudo-samples' size
            inst = read_instances(args.instances, pseudo.shape[-1])
        assert inst.ids == ids, f"{path}: ids differ from {args.instances}"
        fit = follow(pose, inst.image, pseudo, requested)
        per = fit["per_instance_slope"]
        m, se = mean_se(per)
        row = {
            "name": name,
            "slope": round(fit["slope"], 4),
            "r": round(fit["r"], 4),
            "within_slope": round(fit["within"]["slope"], 4),
            "within_r": round(fit["within"]["r"], 4),
            "per_head_slope": [round(m, 4), round(se, 4)],
            "n": len(per),
        }
        if first is None:
            first = per
        else:
            d = mean_se([a - b for a, b in zip(per, first)])
            row["paired_vs_first"] = [round(d[0], 4), round(d[1], 4)]
        print(json.dumps(row))


if __name__ == "__main__":
    main()

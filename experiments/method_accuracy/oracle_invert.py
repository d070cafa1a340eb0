"""Oracle probe of step 2 (issue 4 investigation; see experiments/method_accuracy/results/method_probe/README.md).

Question: can the shipped GAN, through the method's inversion encoder (step 2b, `run_invert`), turn a
head to a new view at all? Here the pseudo-samples are natural: the ground-truth head of each test
instance rendered by the benchmark under a new view and a new light (A). The encoder is trained on
them exactly as in step 2 and the projected samples are collected. Each projected sample is then
compared with A and with B, the same head under the same new light but at the target's own view:
if the projection follows the pose, it is closer to A; if it keeps the target's pose and changes
only the shading (what the real pipeline shows), it is closer to B.

Usage (GPU machine; instances.h5 from `gan2shape project` + `gan2shape sample-instances --latents`
of the first N test heads):
  python3 experiments/method_accuracy/oracle_invert.py --heads W/heads --instances W/test/inst.h5 --out W/oinv \
      --device cuda [--p 400] [--set method.f1_d=2 ...]
Prints one JSON line: masked L1 of the projected samples to A and to B, the share closer to A, and
those numbers per |yaw change| bin.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from oracle_step3 import random_lights, random_views, render_grouped, repeated_heads  # same folder

from gan2shape.artifacts import read_artifact, write_artifact
from gan2shape.config import load_params
from gan2shape.method.chain import PROJECTED_KIND, PSEUDO_KIND
from gan2shape.method.context import make_context
from gan2shape.method.instances import read_instances
from gan2shape.method.steps import run_invert


def paired_renders(heads_cfg, n: int, p: int, seed: int, device: str) -> dict[str, torch.Tensor]:
    """Test heads 0..n-1, p new (view, light) pairs each. Returns (n, p, ...) tensors: image_a (new view,
    new light), image_b (target view, new light), mask_a (n, p, 1, S, S) float, yaw_change (n, p) degrees."""
    rep = repeated_heads(heads_cfg, "test", n, p)
    gen = torch.Generator().manual_seed(seed)
    new_view = random_views(rep["view"], heads_cfg, gen)
    rep["light"] = random_lights(n * p, heads_cfg, gen)
    out = {}
    for tag, view in (("a", new_view), ("b", rep["view"])):
        out[f"image_{tag}"], out[f"mask_{tag}"] = render_grouped({**rep, "view": view}, heads_cfg, n, p, device)
    out["yaw_change"] = ((new_view[:, 1] - rep["view"][:, 1]) * (180.0 / math.pi)).reshape(n, p).to(device)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--heads", required=True)
    ap.add_argument("--instances", required=True)
    ap.add_argument("--p", type=int, default=0, help="pseudo-samples per head (0: collect_batches * batch_size)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    params, text = load_params(Path(args.params), ("method.profile=bench", *args.overrides))
    ctx = make_context(
        params, text, device=args.device, progress=False, nf=params.method.nf, enc_nf=params.method.enc_nf
    )
    inst = read_instances(args.instances, ctx.size, "cpu")
    n = inst.n
    if any(i != f"test-{k:06d}" for k, i in enumerate(inst.ids)):
        raise SystemExit(f"{args.instances} must hold test heads 0..N-1 in order, got {inst.ids[:3]}...")
    sched = params.method.schedule
    p = args.p or sched.collect_batches * sched.batch_size
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    r = paired_renders(params.heads, n, p, seed=params.method.seed + 7, device=args.device)
    # The pseudo-sample mask: the head in the new view (the real pipeline masks with the rendered valid mask).
    pseudo = write_artifact(
        out / "pseudo.h5",
        PSEUDO_KIND,
        {"image": r["image_a"].cpu(), "mask": r["mask_a"].cpu()},
        ids=inst.ids,
        params_text=text,
        attrs={"stage": 1, "source": "oracle"},
    )
    proj_path = run_invert(ctx, args.instances, pseudo, out / "projected.h5")
    with read_artifact(proj_path, PROJECTED_KIND) as art:
        proj = art.tensor("image", device=args.device)
    union = torch.maximum(r["mask_a"], r["mask_b"])
    w = union.sum(dim=(2, 3, 4)).clamp(min=1) * 3

    def l1(x: torch.Tensor) -> torch.Tensor:
        return ((proj - x).abs() * union).sum(dim=(2, 3, 4)) / w

    da, db = l1(r["image_a"]), l1(r["image_b"])
    dab = ((r["image_a"] - r["image_b"]).abs() * union).sum(dim=(2, 3, 4)) / w
    yaw = r["yaw_change"].abs()
    bins = {}
    for lo, hi in ((0, 15), (15, 30), (30, 60), (60, 120)):
        sel = (yaw >= lo) & (yaw < hi)
        if bool(sel.any()):
            bins[f"{lo}-{hi}"] = {
                "l1_to_new_view": round(float(da[sel].mean()), 4),
                "l1_to_target_view": round(float(db[sel].mean()), 4),
                "l1_new_vs_target_view": round(float(dab[sel].mean()), 4),
                "closer_to_new_view": round(float((da[sel] < db[sel]).float().mean()), 3),
                "count": int(sel.sum()),
            }
    print(
        json.dumps(
            {
                "n": n,
                "p": p,
                "overrides": args.overrides,
                "l1_to_new_view": round(float(da.mean()), 4),
                "l1_to_target_view": round(float(db.mean()), 4),
                "closer_to_new_view": round(float((da < db).float().mean()), 3),
                "by_abs_yaw_change_deg": bins,
            }
        ),
        flush=True,
    )
    torch.save(
        {
            "proj": proj[:4, :8].cpu(),
            "a": r["image_a"][:4, :8].cpu(),
            "b": r["image_b"][:4, :8].cpu(),
            "yaw_change": r["yaw_change"][:4, :8].cpu(),
        },
        out / "examples.pt",
    )


if __name__ == "__main__":
    main()

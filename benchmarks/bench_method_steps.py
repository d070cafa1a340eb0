"""Time the GAN2Shape steps on one shard: seconds per step and per iteration, for a device and N.

Usage (from the repo root)::

    python benchmarks/bench_method_steps.py --device cuda --n 16 --profile quick
    python benchmarks/bench_method_steps.py --device cpu --n 2 --profile quick --stages 1

Samples N instances from the configured GAN (params.yaml method.checkpoint), runs the stage loop
into a temporary folder and prints a markdown table read from the artifacts' timing attributes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from gan2shape.artifacts import read_artifact
from gan2shape.config import load_params
from gan2shape.device import resolve_device
from gan2shape.method.context import make_context
from gan2shape.method.instances import sample_instances, write_instances
from gan2shape.method.reconstruct import run_reconstruct, stage_paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--n", type=int, default=2, help="instances in the shard")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--stages", type=int, default=None, help="override the profile's stage count")
    ap.add_argument("--mode", default="instance", choices=["instance", "joint"])
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="extra params override")
    args = ap.parse_args()
    sets = [f"method.profile={args.profile}", f"method.mode={args.mode}", *args.overrides]
    if args.stages is not None:
        sets.append(f"method.profiles.{args.profile}.stages={args.stages}")
    params, text = load_params("params.yaml", sets)
    device = resolve_device(args.device)
    ctx = make_context(params, text, device=device, progress=False)
    sched = params.method.schedule
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        inst = sample_instances(ctx.generator, args.n, seed=0, image_size=params.method.image_size)
        write_instances(out / "instances.h5", inst)
        t0 = time.perf_counter()
        run_reconstruct(ctx, out / "instances.h5", out)
        total = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
        print(
            f"device {device}, N={args.n}, mode {args.mode}, profile {args.profile}, "
            f"image_size {params.method.image_size}, total {total:.1f} s, peak GPU memory {peak:.2f} GiB"
        )
        print("| stage | step | iterations | seconds | ms / iteration |")
        print("|---|---|---|---|---|")
        rows = [(0, "prior", stage_paths(out, 0)["shape"], "shape", sched.prior_iters)]
        for k in range(1, sched.stages + 1):
            i = 0 if k == 1 else 1
            p = stage_paths(out, k)
            rows += [
                (k, "step1", p["albedo"], "albedo", sched.step1_iters[i]),
                (k, "pseudo", p["pseudo"], "pseudo", 0),
                (k, "invert", p["projected"], "projected", sched.step2_iters[i]),
                (k, "step3", p["shape"], "shape", sched.step3_iters[i]),
            ]
        for k, name, path, kind, iters in rows:
            with read_artifact(path, kind) as art:
                sec = float(art.attrs["seconds"])
            per = f"{1000 * sec / iters:.1f}" if iters else "-"
            print(f"| {k} | {name} | {iters} | {sec:.2f} | {per} |")


if __name__ == "__main__":
    main()

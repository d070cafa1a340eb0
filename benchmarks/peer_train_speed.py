"""Training speed of the peer rows (gan2shape train-supervised, train-unsup3d): images per second.

Usage (from the repository root):
    python benchmarks/peer_train_speed.py --device cuda                       # params.yaml's sections
    python benchmarks/peer_train_speed.py --device cuda --batch-sizes 64 128 256 --steps 50
    python benchmarks/peer_train_speed.py --device cpu --image-size 32 --nf 16 --heads 64 --steps 3

The heads are rendered in memory (gan2shape.data.heads, params.yaml's heads section at --image-size), so
no files are needed. Each row times --steps training steps after --warmup steps (cuDNN autotuning, caches)
and prints images/s, ms/step, the seconds the configured step count would take at that speed and the
peak GPU memory. The step counts of params.yaml's supervised and unsup3d sections are estimates until
this has run on the GPU they are meant for.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from gan2shape.config import load_params
from gan2shape.data.heads import render_heads, sample_heads
from gan2shape.peers.data import HeadsSet
from gan2shape.peers.supervised import SupervisedTrainer
from gan2shape.peers.training import fast_cuda
from gan2shape.peers.unsup3d import Unsup3dTrainer, unsup3d_camera
from gan2shape.render import Camera


def heads_in_memory(params, size: int, n: int, device: torch.device) -> HeadsSet:
    cfg = dataclasses.replace(params.heads, image_size=size)
    images, depths, masks = [], [], []
    for start in range(0, n, 250):
        sample = sample_heads(cfg, "train", start, min(250, n - start)).to(device)
        with torch.no_grad():
            out = render_heads(sample, cfg)
        images.append(((out["image"] + 1) * 127.5).round().to(torch.uint8))
        depths.append(out["depth"].float())
        masks.append(out["mask"])
    return HeadsSet(
        [f"train-{i:06d}" for i in range(n)],
        torch.cat(images),
        torch.cat(depths),
        torch.cat(masks),
        Camera(size, fov_deg=cfg.fov_deg),
        path=None,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--models", nargs="+", default=["supervised", "unsup3d"], choices=["supervised", "unsup3d"])
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=None, help="default: each section's batch_size")
    ap.add_argument("--image-size", type=int, default=None, help="default: each section's image_size")
    ap.add_argument("--nf", type=int, default=None, help="override the sections' nf (e.g. 16 on a CPU)")
    ap.add_argument("--heads", type=int, default=2048, help="heads rendered in memory to draw batches from")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    device = torch.device(args.device)
    fast_cuda(device)
    params, _ = load_params(args.params)
    print(
        f"# peer_train_speed: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, "
        f"torch {torch.__version__}, {args.steps} timed steps after {args.warmup}"
    )
    print(
        f"{'model':>10} {'size':>5} {'batch':>6} {'img/s':>9} {'ms/step':>9} {'steps':>7} {'est. s':>8} {'peak GiB':>9}"
    )
    data_cache: dict[int, HeadsSet] = {}
    for model in args.models:
        section = getattr(params, model)
        size = args.image_size or section.image_size
        if size not in data_cache:
            data_cache[size] = heads_in_memory(params, size, args.heads, device)
        data = data_cache[size]
        for batch in args.batch_sizes or [section.batch_size]:
            cfg = dataclasses.replace(
                section, image_size=size, batch_size=batch, **({"nf": args.nf} if args.nf is not None else {})
            )
            if model == "supervised":
                trainer = SupervisedTrainer(cfg, data, data.camera, device)
            else:
                trainer = Unsup3dTrainer(cfg, data, unsup3d_camera(cfg, params.render), device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            for _ in range(args.warmup):
                trainer.train_step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            for _ in range(args.steps):
                trainer.train_step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = (time.perf_counter() - start) / args.steps
            peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
            print(
                f"{model:>10} {size:>5} {batch:>6} {batch / seconds:>9.0f} {1000 * seconds:>9.1f} {cfg.steps:>7} "
                f"{cfg.steps * seconds:>8.0f} {peak:>9.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()

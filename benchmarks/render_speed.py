"""Speed of gan2shape.render.render_view, and CPU-vs-CUDA agreement.

Usage:
    python benchmarks/render_speed.py --device cpu            # table of time per batch
    python benchmarks/render_speed.py --device cuda --sizes 64 128 --batches 1 16 64 256
    python benchmarks/render_speed.py --compare               # same scenes on CPU and CUDA

Scenes are head-like: an ellipsoid cap (a face) on a flat background, or the cap alone
(--masked, as the synthetic benchmark draws it), seen from random views with yaw up to
--max-yaw degrees. Times are the best of --repeats runs after one warm-up run.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from gan2shape.render import Camera, render_view


def head_scene(
    batch: int, size: int, max_yaw_deg: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random head-like scenes on the CPU: texture (B,3,S,S), depth (B,S,S), mask (B,S,S), view (B,6)."""
    cam = Camera(size)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    axes = 0.55 + 0.2 * torch.rand(batch, 2, 1, 1, generator=generator)  # half-width, half-height
    shift = 0.1 * (torch.rand(batch, 2, 1, 1, generator=generator) - 0.5)
    r2 = ((xs - shift[:, 0]) / axes[:, 0]) ** 2 + ((ys - shift[:, 1]) / axes[:, 1]) ** 2
    height = 0.12 + 0.05 * torch.rand(batch, 1, 1, generator=generator)
    far = cam.max_depth - 0.05
    depth = far - height * torch.sqrt((1 - r2).clamp(min=0))
    # A bump for a nose, so the surface is not a pure ellipsoid.
    depth = depth - 0.02 * torch.exp(-((xs - shift[:, 0]) ** 2 + (ys - shift[:, 1]) ** 2) / 0.01)
    mask = r2 < 1
    texture = torch.rand(batch, 3, size, size, generator=generator) * 2 - 1
    view = torch.zeros(batch, 6)
    view[:, 0] = math.radians(20) * (torch.rand(batch, generator=generator) * 2 - 1)
    view[:, 1] = math.radians(max_yaw_deg) * (torch.rand(batch, generator=generator) * 2 - 1)
    view[:, 2] = math.radians(10) * (torch.rand(batch, generator=generator) * 2 - 1)
    view[:, 3:5] = 0.01 * (torch.rand(batch, 2, generator=generator) * 2 - 1)
    return texture, depth, mask, view


def time_render(device: torch.device, size: int, batch: int, args: argparse.Namespace) -> float:
    gen = torch.Generator().manual_seed(0)
    texture, depth, mask, view = (t.to(device) for t in head_scene(batch, size, args.max_yaw, gen))
    cam = Camera(size)
    canon_mask = mask if args.masked else None

    def run() -> None:
        render_view(texture, depth, view, cam, canon_mask=canon_mask)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    run()
    best = math.inf
    for _ in range(args.repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def speed_table(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    print(
        f"render_view on {device} (torch {torch.__version__}, {torch.get_num_threads()} CPU threads), "
        f"{'masked head' if args.masked else 'head + background'}, |yaw| <= {args.max_yaw} deg, "
        f"best of {args.repeats}"
    )
    print(f"{'size':>5} {'batch':>6} {'s/batch':>9} {'ms/image':>9} {'images/s':>9}")
    # One-time start-up costs (thread pools, allocator, CUDA context) stay out of the table.
    for _ in range(3):
        time_render(device, 32, 4, argparse.Namespace(**{**vars(args), "repeats": 1}))
    for size in args.sizes:
        for batch in args.batches:
            sec = time_render(device, size, batch, args)
            print(f"{size:>5} {batch:>6} {sec:>9.4f} {1000 * sec / batch:>9.3f} {batch / sec:>9.0f}", flush=True)


def compare(args: argparse.Namespace) -> None:
    if not torch.cuda.is_available():
        raise SystemExit("--compare needs CUDA: no GPU is visible to torch on this machine")
    print("max / mean |CPU - CUDA| of render_view on the same scenes (float32)")
    print(
        f"{'size':>5} {'batch':>6} {'masked':>6} {'depth max':>10} {'depth mean':>11} {'image max':>10} "
        f"{'image mean':>11} {'mask diff':>9} {'px off':>7}"
    )
    for size in args.sizes:
        for masked in (False, True):
            batch = 64
            gen = torch.Generator().manual_seed(1)
            texture, depth, mask, view = head_scene(batch, size, args.max_yaw, gen)
            cam = Camera(size)
            outs = []
            for dev in ("cpu", "cuda"):
                out = render_view(
                    texture.to(dev), depth.to(dev), view.to(dev), cam, canon_mask=mask.to(dev) if masked else None
                )
                outs.append(out)
            cpu, gpu = outs
            ddiff = (cpu.depth - gpu.depth.cpu()).abs()
            both = (cpu.mask * gpu.mask.cpu()).expand_as(cpu.image)
            idiff = (cpu.image - gpu.image.cpu()).abs() * both
            mdiff = (cpu.mask != gpu.mask.cpu()).float().sum().item()
            # Pixels whose depth differs by more than 1e-3 (a different face won: edge ties).
            off = (ddiff > 1e-3).float().sum().item()
            print(
                f"{size:>5} {batch:>6} {str(masked):>6} {ddiff.max().item():>10.2e} {ddiff.mean().item():>11.2e} "
                f"{idiff.max().item():>10.2e} {idiff.sum().item() / max(both.sum().item(), 1):>11.2e} "
                f"{int(mdiff):>9d} {int(off):>7d}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-yaw", type=float, default=60.0, help="largest |yaw| in degrees (default 60)")
    parser.add_argument("--masked", action="store_true", help="draw only the head (canon_mask), no background")
    parser.add_argument("--compare", action="store_true", help="compare CPU and CUDA results instead of timing")
    args = parser.parse_args()
    if args.compare:
        compare(args)
    else:
        speed_table(args)


if __name__ == "__main__":
    main()

"""Speed of building the synthetic head benchmark (gan2shape.data.heads.make_heads).

Runs the real make_heads (default HeadsConfig unless overridden) into a temporary folder and
prints a table: images, seconds, images per second and the time per stage (drawing the random
parameters, building + shading + rendering, writing HDF5). With ``--profile`` it also times the
parts of one batch of render_heads (geometry, albedo, shading, rasterization, warp) so you can
see where the time goes.

Usage:
    python benchmarks/make_heads_speed.py                       # the full default build (20,500 at 64 px)
    python benchmarks/make_heads_speed.py --image-size 128      # the same at 128 px
    python benchmarks/make_heads_speed.py --n-train 1000 --n-test 0 --profile
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time

import torch

from gan2shape.config import HeadsConfig
from gan2shape.data import head_model as hm
from gan2shape.data.heads import heads_camera, make_heads, render_heads, sample_heads
from gan2shape.render import depth_to_normals, light_direction, render_view, shade, view_depth


def profile_batch(config: HeadsConfig, repeats: int = 3) -> list[tuple[str, float]]:
    """Median seconds of each part of render_heads for one batch of config.batch_size heads."""
    camera = heads_camera(config)
    s = sample_heads(config, "train", 0, config.batch_size)
    size = config.image_size
    depth, mask = hm.canonical_shape(s.shape, size, config.fov_deg)
    albedo = hm.canonical_albedo(s.shape, s.albedo, s.noise, size)
    normals = depth_to_normals(depth, camera)
    texture, _ = shade(albedo, normals, s.light[:, 0], s.light[:, 1], light_direction(s.light[:, 2:]))
    bg = hm.smooth_background(s.background, size)
    parts = {
        "sample_heads (random streams)": lambda: sample_heads(config, "train", 0, config.batch_size),
        "canonical_shape (depth, mask)": lambda: hm.canonical_shape(s.shape, size, config.fov_deg),
        "canonical_albedo": lambda: hm.canonical_albedo(s.shape, s.albedo, s.noise, size),
        "normals + shade": lambda: shade(
            albedo, depth_to_normals(depth, camera), s.light[:, 0], s.light[:, 1], light_direction(s.light[:, 2:])
        ),
        "view_depth (rasterize)": lambda: view_depth(depth, s.view, camera, mask),
        "render_view (rasterize + warp)": lambda: render_view(
            texture, depth, s.view, camera, canon_mask=mask, background=bg
        ),
        "render_heads (all of the above)": lambda: render_heads(s, config),
    }
    rows = []
    with torch.no_grad():
        for name, fn in parts.items():
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            rows.append((name, sorted(times)[len(times) // 2]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = HeadsConfig()
    parser.add_argument("--image-size", type=int, default=defaults.image_size)
    parser.add_argument("--n-train", type=int, default=defaults.n_train)
    parser.add_argument("--n-test", type=int, default=defaults.n_test)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--profile", action="store_true", help="also time the parts of one batch")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = dataclasses.replace(
        defaults, image_size=args.image_size, n_train=args.n_train, n_test=args.n_test, batch_size=args.batch_size
    )
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    if args.profile:
        print(f"\none batch of {config.batch_size} heads at {config.image_size} px (median of 3):")
        print(f"{'part':<40}{'seconds':>10}{'heads/s':>10}")
        for name, sec in profile_batch(config):
            print(f"{name:<40}{sec:>10.3f}{config.batch_size / sec:>10.0f}")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = make_heads(config, tmp, progress=False)
        total = time.perf_counter() - start
        size_mb = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp)) / 2**20
    n = config.n_train + config.n_test
    t = summary["timings"]
    print(f"\nmake_heads, {config.image_size} px, batch {config.batch_size}:")
    print(f"{'images':>8}{'seconds':>10}{'images/s':>10}{'sample s':>10}{'render s':>10}{'write s':>10}{'MiB':>8}")
    print(
        f"{n:>8}{total:>10.1f}{n / total:>10.1f}{t['sample']:>10.1f}{t['render']:>10.1f}{t['write']:>10.1f}"
        f"{size_mb:>8.0f}"
    )


if __name__ == "__main__":
    main()

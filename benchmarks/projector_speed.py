"""Time per image of the GAN projector (gan2shape.stylegan2.projector.project_images).

Projects ``--n`` images drawn by the generator itself (random-initialised networks of the
configured architecture, or a checkpoint with ``--checkpoint``) for ``--steps`` steps in batches
of ``--batch`` and prints seconds per image and per optimisation step, and the PSNR reached.

Usage:
    python benchmarks/projector_speed.py --device cuda --n 200 --steps 500
    python benchmarks/projector_speed.py --device cpu --n 4 --steps 20 --quick
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gan2shape.config import GanConfig, load_params  # noqa: E402
from gan2shape.device import resolve_device  # noqa: E402
from gan2shape.stylegan2.projector import project_images  # noqa: E402
from gan2shape.stylegan2.train import build_networks  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--checkpoint", default=None, help="a StyleGAN2 checkpoint (default: random networks from params)")
    ap.add_argument("--n", type=int, default=100, help="images to project")
    ap.add_argument("--steps", type=int, default=None, help="default: project.steps")
    ap.add_argument("--batch", type=int, nargs="+", default=None, help="batch sizes (default: project.batch_size)")
    ap.add_argument("--quick", action="store_true", help="tiny 32px networks (CPU smoke run)")
    args = ap.parse_args()

    device = resolve_device(args.device)
    params_path = Path(args.params)
    params = load_params(params_path if params_path.is_file() else None)[0]
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    if args.checkpoint:
        from gan2shape.stylegan2.checkpoint import load_checkpoint

        loaded = load_checkpoint(args.checkpoint, device=device)
        g, d = loaded.g_ema, loaded.d
        what = args.checkpoint
    else:
        gan = params.gan
        if args.quick:
            gan = GanConfig(size=32, style_dim=32, n_mlp=2, channel_multiplier=1, channel_max=32)
        g, d, _ = build_networks(gan, device)
        what = f"random {gan.size}px, channel_max {gan.channel_max}, style_dim {gan.style_dim}"
    g.eval()
    base = params.project
    if args.steps is not None:
        base = dataclasses.replace(base, steps=args.steps)
    if d is not None and base.feature_blocks >= d.n_blocks:  # keep the batch-mixing stddev block out
        base = dataclasses.replace(base, feature_blocks=d.n_blocks - 1)
    batches = args.batch or [base.batch_size]

    with torch.no_grad():
        rng = torch.Generator(device=device).manual_seed(123)
        w = g.get_latent(torch.randn(args.n, g.style_dim, generator=rng, device=device))
        target = torch.cat([g([c], input_is_latent=True, randomize_noise=False)[0] for c in w.split(64)]).clamp(-1, 1)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"# projector_speed: {name}, torch {torch.__version__}, generator: {what}; {args.n} images, "
        f"{base.steps} steps, feature_blocks {base.feature_blocks}, w_plus {base.w_plus}"
    )
    header = f"{'batch':>5} {'s/image':>9} {'ms/step':>9} {'total s':>8} {'PSNR start':>10} {'PSNR end':>9}"
    print(header)
    print("-" * len(header))
    for batch in batches:
        config = dataclasses.replace(base, batch_size=batch)
        # Warm-up on one batch for a few steps (cudnn autotuning, allocator).
        project_images(g, d, target[:batch], dataclasses.replace(config, steps=3), device=device, progress=False)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        out = project_images(g, d, target, config, device=device, progress=False)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        total = time.perf_counter() - t0
        n_batches = -(-args.n // batch)
        print(
            f"{batch:>5} {total / args.n:>9.4f} {1000 * total / (n_batches * config.steps):>9.2f} {total:>8.1f} "
            f"{float(out['psnr_init'].mean()):>10.2f} {float(out['psnr'].mean()):>9.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()

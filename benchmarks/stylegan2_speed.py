"""Speed of the StyleGAN2 networks: fast vs reference ops, fp32 vs bf16 autocast.

Prints one row per (size, ops, modulated-conv formulation, precision):
  G fwd      generator forward, no grad (ms)
  G fwd+bwd  generator forward + backward of mean(image) (ms)
  D fwd+bwd  discriminator forward + backward (ms)
  D R1       discriminator R1 penalty: forward, grad w.r.t. the images with create_graph,
             backward of the penalty into the weights (double backward) (ms)
  est img/s  a rough training throughput: batch / (G fwd + 3 D fwd+bwd + G fwd+bwd + R1 / 16),
             i.e. one D step (fake + real), one G step through D, lazy R1 every 16 steps.

Usage:
  python benchmarks/stylegan2_speed.py --device cuda               # batch 16, 64 and 128 px
  python benchmarks/stylegan2_speed.py --device cpu --quick        # tiny smoke run (seconds)
  python benchmarks/stylegan2_speed.py --device cuda --compile --channels-last --sizes 64
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gan2shape.stylegan2.model import Discriminator, Generator, to_channels_last  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], object], device: torch.device, warmup: int, iters: int) -> float:
    """Median wall time of fn() in milliseconds."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def bench_config(
    size: int,
    ops: str,
    fused: bool,
    bf16: bool,
    args: argparse.Namespace,
    device: torch.device,
) -> dict[str, float]:
    torch.manual_seed(0)
    g = Generator(
        size,
        args.style_dim,
        args.n_mlp,
        channel_multiplier=args.channel_multiplier,
        channel_max=args.channel_max,
        ops=ops,
        fused_modconv=fused,
    ).to(device)
    d = Discriminator(size, channel_multiplier=args.channel_multiplier, channel_max=args.channel_max, ops=ops).to(
        device
    )
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    if args.channels_last:
        to_channels_last(g)
        to_channels_last(d)
    mode = None if args.compile_mode == "default" else args.compile_mode
    g_run: Callable = torch.compile(g, mode=mode) if args.compile else g
    d_run: Callable = torch.compile(d, mode=mode) if args.compile else d
    b = args.batch
    z = torch.randn(b, args.style_dim, device=device)
    real = torch.randn(b, 3, size, size, device=device).contiguous(memory_format=fmt)
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def g_fwd() -> None:
        with torch.no_grad(), amp:
            g_run([z])

    def g_fwd_bwd() -> None:
        with amp:
            img, _ = g_run([z])
        img.float().mean().backward()

    def d_fwd_bwd() -> None:
        with amp:
            logits = d_run(real)
        logits.float().mean().backward()

    def d_r1() -> None:
        # Double backward is not supported by compiled graphs: R1 always runs eager.
        x = real.detach().requires_grad_(True)
        with amp:
            logits = d(x)
        (grad,) = torch.autograd.grad(logits.float().sum(), x, create_graph=True)
        grad.float().pow(2).sum([1, 2, 3]).mean().backward()

    w, n = args.warmup, args.iters
    row = {
        "G fwd": time_ms(g_fwd, device, w, n),
        "G fwd+bwd": time_ms(g_fwd_bwd, device, w, n),
        "D fwd+bwd": time_ms(d_fwd_bwd, device, w, n),
        "D R1": time_ms(d_r1, device, w, n),
    }
    step = row["G fwd"] + 3 * row["D fwd+bwd"] + row["G fwd+bwd"] + row["D R1"] / 16
    row["est img/s"] = b / step * 1e3
    return row


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    p.add_argument("--style-dim", type=int, default=512)
    p.add_argument("--n-mlp", type=int, default=8)
    p.add_argument("--channel-multiplier", type=int, default=2)
    p.add_argument("--channel-max", type=int, default=512)
    p.add_argument("--ops", nargs="+", default=["fast", "reference"], choices=["fast", "reference"])
    p.add_argument(
        "--fused",
        nargs="+",
        default=["grouped", "shared"],
        choices=["grouped", "shared"],
        help="modulated-conv formulations to time with the fast ops",
    )
    p.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--compile", action="store_true", help="torch.compile G and D (not R1)")
    p.add_argument(
        "--compile-mode",
        default="default",
        choices=["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"],
    )
    p.add_argument("--channels-last", action="store_true")
    p.add_argument(
        "--quick", action="store_true", help="tiny smoke run: 32 px, batch 4, 32 channels, style 64, 1+2 iterations"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.batch, args.channel_max, args.style_dim = [32], 4, 32, 64
        args.warmup, args.iters = 1, 2
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        name = torch.cuda.get_device_name(device)
    else:
        name = f"cpu ({torch.get_num_threads()} threads)"
    print(
        f"# {name}, torch {torch.__version__}, batch {args.batch}, cm {args.channel_multiplier}, "
        f"channel_max {args.channel_max}, style_dim {args.style_dim}, "
        f"compile={args.compile and args.compile_mode}, "
        f"channels_last={args.channels_last}; times are medians in ms"
    )
    cols = ["G fwd", "G fwd+bwd", "D fwd+bwd", "D R1", "est img/s"]
    print(f"{'size':>4} {'ops':>9} {'modconv':>7} {'prec':>4} " + " ".join(f"{c:>10}" for c in cols))
    for size in args.sizes:
        for ops in args.ops:
            formulations = args.fused if ops == "fast" else ["grouped"]
            for form in formulations:
                for prec in args.precision:
                    row = bench_config(size, ops, form == "grouped", prec == "bf16", args, device)
                    print(
                        f"{size:>4} {ops:>9} {form:>7} {prec:>4} " + " ".join(f"{row[c]:>10.1f}" for c in cols),
                        flush=True,
                    )


if __name__ == "__main__":
    main()

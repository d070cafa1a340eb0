"""Training throughput of the StyleGAN2 loop (gan2shape.stylegan2.train.GanTrainer).

Builds the configured GAN (params.yaml ``gan`` section), trains on random uint8 images held in
device memory and prints images per second for amp none/bf16, compile off/on and several batch
sizes. The timed window covers a whole number of lazy-R1 periods, so R1's cost is included at its
real rate (one R1 step per ``r1_every`` iterations).

Usage:
    python benchmarks/gan_train_speed.py                          # GPU: full table (< 5 min)
    python benchmarks/gan_train_speed.py --quick                  # CPU smoke run (tiny model)
    python benchmarks/gan_train_speed.py --batch-sizes 64 --amp bf16 --compile on
    python benchmarks/gan_train_speed.py --fused-modconv both --channels-last both --pair-d both
    python benchmarks/gan_train_speed.py --batch-sizes 64 --compile on --compile-mode reduce-overhead
    python benchmarks/gan_train_speed.py --batch-sizes 64 --compile off --breakdown
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gan2shape.config import GanConfig, load_params  # noqa: E402
from gan2shape.device import resolve_device  # noqa: E402
from gan2shape.stylegan2.train import (  # noqa: E402
    GanTrainer,
    d_logistic_loss,
    discriminate_pair,
    ema_update_,
    g_nonsaturating_loss,
    r1_penalty,
)


def _flags(value: str) -> list[bool]:
    return {"off": [False], "on": [True], "both": [False, True]}[value]


def measure(
    config: GanConfig,
    data: torch.Tensor,
    device: torch.device,
    *,
    periods: int,
    warmup_periods: int,
    compile: bool,
    **switches,
) -> dict:
    """img/s over ``periods`` lazy-R1 periods after ``warmup_periods`` periods of warm-up."""
    t0 = time.perf_counter()
    trainer = GanTrainer(config, data, device, compile=compile, **switches)
    if compile and not trainer.compiled:
        raise RuntimeError("torch.compile failed (see the warning above); trainer fell back to eager")
    period = config.r1_every
    for _ in range(warmup_periods * period):
        trainer.train_step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    setup = time.perf_counter() - t0
    start = time.perf_counter()
    steps = periods * period
    for _ in range(steps):
        out = trainer.train_step()
    loss = float(out["g_loss"])  # synchronises
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {
        "img_per_s": steps * config.batch_size / elapsed,
        "ms_per_step": 1000 * elapsed / steps,
        "setup_s": setup,
        "peak_gib": peak,
        "finite": bool(torch.isfinite(torch.tensor(loss))),
    }


def breakdown(config: GanConfig, data: torch.Tensor, device: torch.device, iters: int = 10) -> None:
    """Milliseconds of the parts of one iteration (eager, the configured amp and batch size)."""
    trainer = GanTrainer(config, data, device)
    for _ in range(2 * config.r1_every):
        trainer.train_step()
    b = config.batch_size
    real = trainer._reals(b)
    z, cut, noise = trainer._latents(b)

    def g_nograd():
        with torch.no_grad(), trainer._autocast():
            return trainer._synth(z, cut, noise)

    fake = g_nograd()

    def d_step():
        with trainer._autocast():
            fp, rp = discriminate_pair(trainer._disc, fake, real, 4)
        d_logistic_loss(rp.float(), fp.float()).backward()

    def g_step():
        trainer.d.requires_grad_(False)
        with trainer._autocast():
            loss = g_nonsaturating_loss(trainer._disc(trainer._synth(z, cut, noise)).float())
        loss.backward()
        trainer.d.requires_grad_(True)

    def r1():
        r1_penalty(trainer.d, real).backward()

    def optim_ema():
        trainer.g_optim.step()
        trainer.d_optim.step()
        ema_update_(trainer.g_ema, trainer.g, 0.99)

    parts = [
        ("G forward, no grad", g_nograd),
        ("D step fwd+bwd (fake+real)", d_step),
        ("G step fwd+bwd (through D)", g_step),
        ("R1 fwd+double bwd (per call)", r1),
        ("2 Adam steps + EMA", optim_ema),
        ("whole train_step (R1 1/%d)" % config.r1_every, trainer.train_step),
    ]
    print(f"# breakdown at batch {b}, amp {config.amp}, eager")
    for name, fn in parts:
        for _ in range(3):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        print(f"{name:32s} {1000 * (time.perf_counter() - t0) / iters:9.2f} ms", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml", help="params.yaml with the gan section")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--quick", action="store_true", help="CPU smoke run: tiny 32px model, few steps")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--amp", nargs="+", default=["none", "bf16"], choices=["none", "bf16"])
    ap.add_argument("--compile", default="both", choices=["off", "on", "both"])
    ap.add_argument(
        "--compile-batch-sizes",
        type=int,
        nargs="*",
        default=None,
        help="batch sizes that also run compiled (default: the configured gan.batch_size only, "
        "to keep the run short; compiling takes ~1 min each)",
    )
    ap.add_argument("--fused-modconv", default="off", choices=["off", "on", "both"])
    ap.add_argument("--channels-last", default="off", choices=["off", "on", "both"])
    ap.add_argument(
        "--pair-d",
        default="on",
        choices=["off", "on", "both"],
        help="fake and real batches through D in one call (same result, fewer launches)",
    )
    ap.add_argument(
        "--compile-mode",
        default=None,
        choices=[None, "default", "reduce-overhead", "max-autotune-no-cudagraphs", "max-autotune"],
        help="torch.compile mode for the compiled rows (reduce-overhead = CUDA graphs)",
    )
    ap.add_argument("--breakdown", action="store_true", help="also print ms of each part of an iteration")
    ap.add_argument("--periods", type=int, default=4, help="timed lazy-R1 periods (r1_every steps each)")
    ap.add_argument("--warmup-periods", type=int, default=2)
    args = ap.parse_args()

    if args.quick:
        device = torch.device("cpu") if args.device == "auto" else resolve_device(args.device)
        config = GanConfig(
            size=32, style_dim=32, n_mlp=2, channel_multiplier=1, channel_max=32, r1_every=4, amp="none", batch_size=8
        )
        args.batch_sizes, args.periods, args.warmup_periods = [8], 2, 1
        args.amp, args.compile = ["none"], "off"
    else:
        device = resolve_device(args.device)
        params_path = Path(args.params)
        config = load_params(params_path if params_path.is_file() else None)[0].gan
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    compile_batches = set(args.compile_batch_sizes if args.compile_batch_sizes is not None else [config.batch_size])

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"# gan_train_speed: {name}, torch {torch.__version__}, size {config.size}, style_dim {config.style_dim}, "
        f"n_mlp {config.n_mlp}, channel_multiplier {config.channel_multiplier}, channel_max {config.channel_max}, "
        f"r1_every {config.r1_every}, {args.periods} timed R1 periods"
    )
    data = torch.randint(0, 256, (4096, 3, config.size, config.size), dtype=torch.uint8, device=device)
    if args.breakdown:
        for amp in args.amp:
            breakdown(dataclasses.replace(config, amp=amp), data, device)
    mode = None if args.compile_mode in (None, "default") else args.compile_mode
    header = (
        f"{'batch':>5} {'amp':>5} {'compile':>7} {'fusedmc':>7} {'ch_last':>7} {'pair_d':>6} {'img/s':>9} "
        f"{'ms/step':>8} {'peak GiB':>8} {'setup s':>7}"
    )
    print(header)
    print("-" * len(header))
    for batch, amp, comp, fused, cl, pair in itertools.product(
        args.batch_sizes,
        args.amp,
        _flags(args.compile),
        _flags(args.fused_modconv),
        _flags(args.channels_last),
        _flags(args.pair_d),
    ):
        if comp and batch not in compile_batches:
            continue
        cfg = dataclasses.replace(config, batch_size=batch, amp=amp, compile=comp)
        on = {True: "on", False: "off"}
        comp_name = (mode or "on") if comp else "off"
        prefix = f"{batch:>5} {amp:>5} {comp_name[:7]:>7} {on[fused]:>7} {on[cl]:>7} {on[pair]:>6}"
        try:
            r = measure(
                cfg,
                data,
                device,
                compile=comp,
                fused_modconv=fused,
                channels_last=cl,
                pair_d=pair,
                compile_mode=mode,
                periods=args.periods,
                warmup_periods=args.warmup_periods,
            )
            flag = "" if r["finite"] else "  (non-finite loss!)"
            print(
                f"{prefix} {r['img_per_s']:>9.0f} {r['ms_per_step']:>8.2f} {r['peak_gib']:>8.2f}"
                f" {r['setup_s']:>7.1f}{flag}",
                flush=True,
            )
        except Exception as exc:  # noqa: BLE001 - report and go on with the next configuration
            print(
                f"{prefix}   FAILED: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", flush=True
            )
            traceback.print_exc(limit=2, file=sys.stderr)
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if comp:
                torch._dynamo.reset()


if __name__ == "__main__":
    main()

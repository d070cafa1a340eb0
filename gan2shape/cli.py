"""The ``gan2shape`` command line: one subcommand per pipeline step (each is one Snakemake rule).

Subcommands import their library module lazily so that ``gan2shape --help`` stays fast.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import click

from gan2shape import __version__

log = logging.getLogger("gan2shape")

_PARAMS_OPTION = click.option(
    "--params",
    "params_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default="params.yaml",
    show_default=True,
    help="The project's params.yaml.",
)
_SET_OPTION = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override one params key, e.g. --set heads.n_train=1000 (repeatable).",
)
_DEVICE_OPTION = click.option(
    "--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."
)


def _load(params_path: Path, overrides: tuple[str, ...]):
    from gan2shape.config import load_params

    try:
        return load_params(params_path, overrides)
    except (FileNotFoundError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="gan2shape")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """gan2shape: 3D shape from pretrained 2D StyleGAN2s (GAN2Shape)."""
    level = logging.WARNING - 10 * min(verbose + 1, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s: %(message)s", stream=sys.stderr)
    ctx.obj = {"progress": not quiet}


@main.command("check-params")
@_PARAMS_OPTION
@_SET_OPTION
def check_params(params_path: Path, overrides: tuple[str, ...]) -> None:
    """Validate params.yaml and print the effective configuration."""
    _, text = _load(params_path, overrides)
    click.echo(text, nl=False)


@main.command("make-heads")
@_PARAMS_OPTION
@_SET_OPTION
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output folder: train.h5, test.h5 and contact sheets go there.")
@_DEVICE_OPTION
@click.pass_context
def make_heads_cmd(ctx: click.Context, params_path: Path, overrides: tuple[str, ...], out_dir: Path, device: str) -> None:
    """Build the synthetic head benchmark (images with exact depth, normals, masks)."""
    from gan2shape.data.heads import make_heads
    from gan2shape.device import resolve_device

    params, _ = _load(params_path, overrides)
    start = time.perf_counter()
    summary = make_heads(params.heads, out_dir, device=resolve_device(device), progress=ctx.obj["progress"])
    click.echo(json.dumps({**summary, "seconds": round(time.perf_counter() - start, 2)}, default=str))


@main.command("evaluate")
@_PARAMS_OPTION
@_SET_OPTION
@click.option("--test", "test_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The benchmark's test split (test.h5).")
@click.option("--train", "train_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The train split, for the average-GT-depth baseline.")
@click.option("--pred", "pred_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A prediction artifact (kind 'prediction', dataset 'depth') to score.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output folder for metrics.json and table.md.")
@click.option("--baselines/--no-baselines", default=True, show_default=True, help="Add the baseline rows.")
def evaluate_cmd(params_path: Path, overrides: tuple[str, ...], test_path: Path, train_path: Path | None,
                 pred_path: Path | None, out_dir: Path, baselines: bool) -> None:
    """Score depth predictions (SIDE, MAD) and baselines against ground truth."""
    from gan2shape.evaluate import run_evaluate

    params, _ = _load(params_path, overrides)
    result = run_evaluate(test_path, pred_path, out_dir, train_path=train_path, baselines=baselines,
                          config=params.evaluate)
    click.echo((out_dir / "table.md").read_text() if (out_dir / "table.md").exists() else json.dumps(result))


@main.command("train-gan")
@_PARAMS_OPTION
@_SET_OPTION
@click.option("--data", "data_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="HDF5 image set (e.g. the heads train.h5, dataset 'image').")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run folder: checkpoint.pt (resumable), samples_*.png, log.jsonl, final.pt.")
@click.option("--max-kimg", type=float, default=None,
              help="Train at most this many thousand images in this call (chunked runs); rerun to continue.")
@click.option("--half-final/--full-final", default=True, show_default=True,
              help="Store final.pt weights in float16.")
@_DEVICE_OPTION
@click.pass_context
def train_gan_cmd(ctx: click.Context, params_path: Path, overrides: tuple[str, ...], data_path: Path,
                  out_dir: Path, max_kimg: float | None, half_final: bool, device: str) -> None:
    """Train a StyleGAN2 (resumes from OUT/checkpoint.pt when present)."""
    from gan2shape.device import resolve_device
    from gan2shape.stylegan2.train import train_gan

    params, text = _load(params_path, overrides)
    summary = train_gan(params.gan, data_path, out_dir, device=resolve_device(device), max_kimg=max_kimg,
                        progress=ctx.obj["progress"], params_text=text, half_final=half_final)
    click.echo(json.dumps(summary, default=str))


@main.command("project")
@_PARAMS_OPTION
@_SET_OPTION
@click.option("--checkpoint", "checkpoint_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="StyleGAN2 checkpoint (official rosinality layout or ours).")
@click.option("--images", "images_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="HDF5 artifact with dataset 'image' (N, 3, S, S) uint8, e.g. the heads test.h5.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output latents artifact (.h5).")
@click.option("--limit", type=int, default=None, help="Project only the first N images.")
@_DEVICE_OPTION
@click.pass_context
def project_cmd(ctx: click.Context, params_path: Path, overrides: tuple[str, ...], checkpoint_path: Path,
                images_path: Path, out_path: Path, limit: int | None, device: str) -> None:
    """Invert images into the GAN (optimise w+ and noise); writes latents for the method."""
    from gan2shape.device import resolve_device
    from gan2shape.stylegan2.projector import project_file

    params, text = _load(params_path, overrides)
    if limit is not None and limit < 1:
        raise click.UsageError(f"--limit must be >= 1, got {limit}")
    path = project_file(checkpoint_path, images_path, out_path, params.project, device=resolve_device(device),
                        limit=limit, progress=ctx.obj["progress"], params_text=text)
    from gan2shape.artifacts import read_artifact

    with read_artifact(path, kind="latents") as art:
        psnr = art.array("psnr")
    click.echo(json.dumps({"out": str(path), "n": int(psnr.size), "psnr_mean": float(psnr.mean()),
                           "psnr_min": float(psnr.min())}))


@main.command("export-gan")
@click.option("--checkpoint", "checkpoint_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="A training checkpoint.pt or any StyleGAN2 checkpoint.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The exported file: g_ema + d (+ latent_avg) in the official layout.")
@click.option("--half/--full", default=True, show_default=True, help="Store weights in float16.")
def export_gan_cmd(checkpoint_path: Path, out_path: Path, half: bool) -> None:
    """Strip a checkpoint to what inference needs (g_ema, d, latent_avg), e.g. to ship it."""
    from gan2shape.stylegan2.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    try:
        ckpt = load_checkpoint(checkpoint_path)
    except CheckpointError as exc:
        raise click.ClickException(str(exc)) from None
    if ckpt.d is None:
        raise click.ClickException(f"{checkpoint_path} has no discriminator ('d'); the method needs it")
    extra = {k: v for k, v in (ckpt.extra or {}).items() if k != "gan2shape_train"}
    train = (ckpt.extra or {}).get("gan2shape_train", {})
    if "images_seen" in train:
        extra["images_seen"] = int(train["images_seen"])
    save_checkpoint(out_path, ckpt.g_ema, ckpt.d, latent_avg=ckpt.latent_avg, extra=extra, half=half)
    click.echo(json.dumps({"out": str(out_path), "bytes": out_path.stat().st_size, "config": str(ckpt.config),
                           **({"images_seen": extra["images_seen"]} if "images_seen" in extra else {})}))


if __name__ == "__main__":  # pragma: no cover
    main()

"""The ``gan2shape`` command line: one subcommand per pipeline step (each is one Snakemake rule).

Subcommands import their library module lazily so that ``gan2shape --help`` stays fast.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import TextIO

import click

from gan2shape import __version__
from gan2shape.errors import ConfigError, Gan2ShapeError

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
_DEVICE_OPTION = click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")


def _load(params_path: Path, overrides: tuple[str, ...]):
    from gan2shape.config import load_params

    try:
        return load_params(params_path, overrides)
    except FileNotFoundError as exc:  # the params file itself
        raise ConfigError("", str(exc)) from None


# Errors of the file system that a user fixes (a wrong path, a permission): one line, like ours.
_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


class _Group(click.Group):
    """Turns the errors a user can fix (gan2shape.errors.Gan2ShapeError and a few OSErrors) into one
    line ``Error: ...`` and exit code 1 (2 for configuration errors), without a traceback; ``-v`` adds
    the traceback. Under ``--log`` the line goes to the log and to the terminal."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (Gan2ShapeError, *_OS_ERRORS) as exc:
            obj = ctx.obj or {}
            if obj.get("verbose"):
                traceback.print_exc()
            message = f"Error: {exc}"
            click.echo(message, err=True)
            terminal = obj.get("terminal")
            if terminal is not None:
                command = ctx.invoked_subcommand or "gan2shape"
                terminal.write(f"gan2shape {command}: {message} (log: {obj['log_path']})\n")
                terminal.flush()
            ctx.exit(2 if isinstance(exc, ConfigError) else 1)


def _divert_output(log_path: Path) -> TextIO:
    """Send this process's stdout and stderr (log records, progress bars, output, tracebacks, also
    those of C libraries) to ``log_path``; returns a stream to the terminal's stderr as it was."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    terminal_fd = os.dup(2)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    return os.fdopen(terminal_fd, "w", buffering=1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="gan2shape")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug); tracebacks of errors.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars (the log still gets one line per phase).")
@click.option(
    "--log",
    "log_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write everything (log, output, errors, tracebacks) to this file; the terminal gets one "
    "line per phase of the work and any error. The workflow's rules run this way.",
)
@click.option(
    "--threads",
    type=int,
    default=None,
    help="CPU threads for torch (capped at this machine's cores); default: torch's choice.",
)
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool, log_path: Path | None, threads: int | None) -> None:
    """gan2shape: 3D shape from pretrained 2D StyleGAN2s (GAN2Shape)."""
    ctx.obj = {"progress": not quiet, "verbose": verbose, "log_path": log_path, "terminal": None}
    if threads is not None:
        if threads < 1:
            raise click.UsageError(f"--threads must be >= 1, got {threads}")
        import torch

        # more threads than cores makes torch's OpenMP workers spin against each other
        torch.set_num_threads(min(threads, os.cpu_count() or threads))
    level = logging.WARNING - 10 * min(verbose + 1, 2)
    fmt = "%(asctime)s %(name)s %(levelname)s: %(message)s"
    if log_path is None:
        logging.basicConfig(level=level, format=fmt, stream=sys.stderr)
        return
    terminal = ctx.obj["terminal"] = _divert_output(log_path)
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr, force=True)
    from gan2shape.progress import terminal_handler

    logging.getLogger().addHandler(terminal_handler(terminal, f"gan2shape {ctx.invoked_subcommand}"))


@main.command("check-params")
@_PARAMS_OPTION
@_SET_OPTION
def check_params(params_path: Path, overrides: tuple[str, ...]) -> None:
    """Validate params.yaml and print the effective configuration."""
    _, text = _load(params_path, overrides)
    click.echo(text, nl=False)


@main.command("check-artifact")
@click.argument("paths", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def check_artifact_cmd(ctx: click.Context, paths: tuple[Path, ...]) -> None:
    """Read every byte of artifact files (.h5) and check them against their checksums; names each
    damaged file with its dataset (reads check only what they read)."""
    from gan2shape.artifacts import read_artifact

    failed = 0
    for path in paths:
        try:
            with read_artifact(path) as art:
                checked = art.verify()
                click.echo(f"{path}: ok (kind {art.kind!r}, {art.n} instance(s), {checked} checksummed dataset(s))")
        except Gan2ShapeError as exc:
            failed += 1
            click.echo(f"Error: {exc}", err=True)
    if failed:
        ctx.exit(1)


@main.command("make-heads")
@_PARAMS_OPTION
@_SET_OPTION
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Output folder: train.h5, test.h5 and contact sheets go there.",
)
@_DEVICE_OPTION
@click.pass_context
def make_heads_cmd(
    ctx: click.Context, params_path: Path, overrides: tuple[str, ...], out_dir: Path, device: str
) -> None:
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
@click.option(
    "--test",
    "test_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The benchmark's test split (test.h5).",
)
@click.option(
    "--train",
    "train_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The train split, for the average-GT-depth baseline.",
)
@click.option(
    "--pred",
    "pred_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A prediction artifact (kind 'prediction', dataset 'depth') to score.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Output folder for metrics.json and table.md.",
)
@click.option("--baselines/--no-baselines", default=True, show_default=True, help="Add the baseline rows.")
@click.option(
    "--limit",
    type=int,
    default=None,
    help="Score only the first N rows of the prediction (or test images): e.g. the bench.n_test heads "
    "of the method's Table 1 run.",
)
def evaluate_cmd(
    params_path: Path,
    overrides: tuple[str, ...],
    test_path: Path,
    train_path: Path | None,
    pred_path: Path | None,
    out_dir: Path,
    baselines: bool,
    limit: int | None,
) -> None:
    """Score depth predictions (SIDE, MAD) and baselines against ground truth."""
    from gan2shape.evaluate import run_evaluate

    params, _ = _load(params_path, overrides)
    if limit is not None and limit < 1:
        raise click.UsageError(f"--limit must be >= 1, got {limit}")
    result = run_evaluate(
        test_path,
        pred_path,
        out_dir,
        train_path=train_path,
        baselines=baselines,
        config=params.evaluate,
        prior=params.method.prior,
        max_images=limit,
    )
    click.echo((out_dir / "table.md").read_text() if (out_dir / "table.md").exists() else json.dumps(result))


@main.command("tables")
@_PARAMS_OPTION
@_SET_OPTION
@click.option(
    "--eval",
    "eval_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The benchmark's evaluation folder: test/, prior-<variant>/, perceptual-<name>/, "
    "each with stage<k>/metrics.json of `gan2shape evaluate`.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Output folder: table1.md/.json, table2.md/.json, perceptual.md/.json, stages.csv.",
)
@click.option("--small", is_flag=True, help="The rows of the CPU variant (bench.small) instead of bench.")
@click.option(
    "--peer",
    "peers",
    multiple=True,
    type=click.Choice(["supervised", "unsup3d"]),
    help="Add this peer row to Table 1 (repeatable), evaluated under EVAL/<peer>/all and EVAL/<peer>/table1; "
    "with supervised, the tables give each row's share of the gap closed.",
)
def tables_cmd(
    params_path: Path, overrides: tuple[str, ...], eval_dir: Path, out_dir: Path, small: bool, peers: tuple[str, ...]
) -> None:
    """Benchmark tables: Table 1 (baselines, peers, ours per stage), Table 2 (priors), perceptual ablation."""
    from gan2shape.evaluate.report import run_tables

    params, _ = _load(params_path, overrides)
    bench = params.bench.variant(small)
    written = run_tables(
        eval_dir,
        out_dir,
        priors=bench.priors,
        perceptual=bench.perceptual,
        default_row=(params.method.perceptual, params.method.prior.variant),
        peers=peers,
    )
    for name in ("table1.md", "table2.md", "perceptual.md"):
        click.echo(written[name].read_text(encoding="utf-8"))


@main.command("results-doc")
@click.option(
    "--metrics",
    "metrics_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("results/bench/report/metrics"),
    show_default=True,
    help="The benchmark's metric files (`gan2shape tables`): table1/, table2/, perceptual/.",
)
@click.option(
    "--baselines",
    "baselines_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("docs/baselines/metrics.json"),
    show_default=True,
    help="A metrics.json of `gan2shape evaluate` with the baselines on every test head.",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("docs/results.md"),
    show_default=True,
    help="The page to write.",
)
def results_doc_cmd(metrics_dir: Path, baselines_path: Path, out_path: Path) -> None:
    """Write docs/results.md from the metric files (run it after `dvc repro` or a new baseline evaluation)."""
    from gan2shape.atomic import write_text_atomic
    from gan2shape.evaluate.report import results_markdown

    start = time.perf_counter()
    _done(write_text_atomic(out_path, results_markdown(metrics_dir, baselines_path)), start)


@main.command("train-gan")
@_PARAMS_OPTION
@_SET_OPTION
@click.option(
    "--data",
    "data_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="HDF5 image set (e.g. the heads train.h5, dataset 'image').",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Run folder: checkpoint.pt (resumable), samples_*.png, log.jsonl, final.pt.",
)
@click.option(
    "--max-kimg",
    type=float,
    default=None,
    help="Train at most this many thousand images in this call (chunked runs); rerun to continue.",
)
@click.option("--half-final/--full-final", default=True, show_default=True, help="Store final.pt weights in float16.")
@click.option(
    "--init",
    "init_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Warm start: begin from this generator file's g_ema and d (e.g. the shipped generator) with "
    "fresh optimisers, counting on from its images; ignored once OUT/checkpoint.pt exists.",
)
@_DEVICE_OPTION
@click.pass_context
def train_gan_cmd(
    ctx: click.Context,
    params_path: Path,
    overrides: tuple[str, ...],
    data_path: Path,
    out_dir: Path,
    max_kimg: float | None,
    half_final: bool,
    init_path: Path | None,
    device: str,
) -> None:
    """Train a StyleGAN2 (resumes from OUT/checkpoint.pt when present, else from --init if given)."""
    from gan2shape.device import resolve_device
    from gan2shape.stylegan2.train import train_gan

    params, text = _load(params_path, overrides)
    summary = train_gan(
        params.gan,
        data_path,
        out_dir,
        device=resolve_device(device),
        max_kimg=max_kimg,
        progress=ctx.obj["progress"],
        params_text=text,
        half_final=half_final,
        init=init_path,
    )
    click.echo(json.dumps(summary, default=str))


def _peer_train_options(f):
    for option in reversed(
        [
            _PARAMS_OPTION,
            _SET_OPTION,
            click.option(
                "--data",
                "data_path",
                type=click.Path(dir_okay=False, path_type=Path),
                required=True,
                help="The heads train split (train.h5 of gan2shape make-heads).",
            ),
            click.option(
                "--out",
                "out_dir",
                type=click.Path(file_okay=False, path_type=Path),
                required=True,
                help="Run folder: checkpoint.pt (resumable; a rerun continues from it) and log.jsonl.",
            ),
            click.option(
                "--max-steps",
                type=int,
                default=None,
                help="Train at most this many steps in this call (chunked runs); rerun to continue.",
            ),
            click.option(
                "--max-minutes",
                type=float,
                default=None,
                help="Stop this call after this many minutes (checkpoint written); rerun to continue.",
            ),
            _DEVICE_OPTION,
        ]
    ):
        f = option(f)
    return f


def _peer_limits(max_steps: int | None, max_minutes: float | None) -> float | None:
    if max_steps is not None and max_steps < 1:
        raise click.UsageError(f"--max-steps must be >= 1, got {max_steps}")
    if max_minutes is not None and max_minutes <= 0:
        raise click.UsageError(f"--max-minutes must be > 0, got {max_minutes}")
    return None if max_minutes is None else 60.0 * max_minutes


@main.command("train-supervised")
@_peer_train_options
@click.pass_context
def train_supervised_cmd(
    ctx: click.Context,
    params_path: Path,
    overrides: tuple[str, ...],
    data_path: Path,
    out_dir: Path,
    max_steps: int | None,
    max_minutes: float | None,
    device: str,
) -> None:
    """Table 1's supervised row: the method's depth net trained with the train heads' GT depth (params'
    supervised section); resumes from OUT/checkpoint.pt."""
    from gan2shape.device import resolve_device
    from gan2shape.peers import train_supervised

    params, text = _load(params_path, overrides)
    seconds = _peer_limits(max_steps, max_minutes)
    summary = train_supervised(
        params.supervised,
        data_path,
        out_dir,
        device=resolve_device(device),
        max_steps=max_steps,
        max_seconds=seconds,
        progress=ctx.obj["progress"],
        params_text=text,
    )
    click.echo(json.dumps(summary))


@main.command("train-unsup3d")
@_peer_train_options
@click.pass_context
def train_unsup3d_cmd(
    ctx: click.Context,
    params_path: Path,
    overrides: tuple[str, ...],
    data_path: Path,
    out_dir: Path,
    max_steps: int | None,
    max_minutes: float | None,
    device: str,
) -> None:
    """Table 1's Unsup3d row: Unsup3d trained on the train heads' images alone (params' unsup3d section,
    the render section's camera); resumes from OUT/checkpoint.pt."""
    from gan2shape.device import resolve_device
    from gan2shape.peers import train_unsup3d

    params, text = _load(params_path, overrides)
    seconds = _peer_limits(max_steps, max_minutes)
    summary = train_unsup3d(
        params.unsup3d,
        params.render,
        data_path,
        out_dir,
        device=resolve_device(device),
        max_steps=max_steps,
        max_seconds=seconds,
        progress=ctx.obj["progress"],
        params_text=text,
    )
    click.echo(json.dumps(summary))


@main.command("predict")
@_PARAMS_OPTION
@_SET_OPTION
@click.option(
    "--checkpoint",
    "checkpoint_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="checkpoint.pt of gan2shape train-supervised or train-unsup3d.",
)
@click.option(
    "--images",
    "images_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="A heads split (e.g. test.h5 of gan2shape make-heads).",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Output 'prediction' artifact (.h5) for gan2shape evaluate --pred.",
)
@click.option("--limit", type=int, default=None, help="Predict only the first N heads.")
@_DEVICE_OPTION
@click.pass_context
def predict_cmd(
    ctx: click.Context,
    params_path: Path,
    overrides: tuple[str, ...],
    checkpoint_path: Path,
    images_path: Path,
    out_path: Path,
    limit: int | None,
    device: str,
) -> None:
    """Depth of a heads split by a trained peer model (supervised or Unsup3d), for gan2shape evaluate."""
    from gan2shape.device import resolve_device
    from gan2shape.peers import run_predict

    _, text = _load(params_path, overrides)
    if limit is not None and limit < 1:
        raise click.UsageError(f"--limit must be >= 1, got {limit}")
    summary = run_predict(
        checkpoint_path,
        images_path,
        out_path,
        device=resolve_device(device),
        limit=limit,
        progress=ctx.obj["progress"],
        params_text=text,
    )
    click.echo(json.dumps(summary))


@main.command("project")
@_PARAMS_OPTION
@_SET_OPTION
@click.option(
    "--checkpoint",
    "checkpoint_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="StyleGAN2 checkpoint (official rosinality layout or ours).",
)
@click.option(
    "--images",
    "images_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="HDF5 artifact with dataset 'image' (N, 3, S, S) uint8, e.g. the heads test.h5.",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Output latents artifact (.h5).",
)
@click.option("--limit", type=int, default=None, help="Project only the first N images.")
@_DEVICE_OPTION
@click.pass_context
def project_cmd(
    ctx: click.Context,
    params_path: Path,
    overrides: tuple[str, ...],
    checkpoint_path: Path,
    images_path: Path,
    out_path: Path,
    limit: int | None,
    device: str,
) -> None:
    """Invert images into the GAN (optimise w+ and noise); writes latents for the method."""
    from gan2shape.device import resolve_device
    from gan2shape.stylegan2.projector import project_file

    params, text = _load(params_path, overrides)
    if limit is not None and limit < 1:
        raise click.UsageError(f"--limit must be >= 1, got {limit}")
    path = project_file(
        checkpoint_path,
        images_path,
        out_path,
        params.project,
        device=resolve_device(device),
        limit=limit,
        progress=ctx.obj["progress"],
        params_text=text,
    )
    from gan2shape.artifacts import read_artifact

    with read_artifact(path, kind="latents") as art:
        psnr = art.array("psnr")
    click.echo(
        json.dumps(
            {"out": str(path), "n": int(psnr.size), "psnr_mean": float(psnr.mean()), "psnr_min": float(psnr.min())}
        )
    )


@main.command("import-images")
@click.option(
    "--images",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="A folder of PNG/JPG images, each of the GAN's resolution.",
)
@click.option(
    "--checkpoint",
    "checkpoint_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The GAN the images will be projected into: its resolution is the size every image must have.",
)
@click.option("--size", type=int, default=None, help="The required image size instead of --checkpoint.")
@click.option("--limit", type=int, default=None, help="Import only the first N images (all are size-checked).")
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Output image artifact (.h5, dataset 'image'), the input of `gan2shape project`.",
)
def import_images_cmd(
    folder: Path, checkpoint_path: Path | None, size: int | None, limit: int | None, out_path: Path
) -> None:
    """A folder of images as an HDF5 image artifact, every file size-checked first (names the bad one)."""
    from gan2shape.data.images import import_images

    if (checkpoint_path is None) == (size is None):
        raise click.UsageError("give exactly one of --checkpoint (the GAN's resolution) or --size")
    if limit is not None and limit < 1:
        raise click.UsageError(f"--limit must be >= 1, got {limit}")
    if checkpoint_path is not None:
        from gan2shape.stylegan2.checkpoint import load_checkpoint

        size = load_checkpoint(checkpoint_path, device="cpu").g_ema.size
    path = import_images(folder, out_path, size, limit=limit)
    click.echo(json.dumps({"out": str(path), "size": size}))


@main.command("export-gan")
@click.option(
    "--checkpoint",
    "checkpoint_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="A training checkpoint.pt or any StyleGAN2 checkpoint.",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The exported file: g_ema + d (+ latent_avg) in the official layout.",
)
@click.option("--half/--full", default=True, show_default=True, help="Store weights in float16.")
def export_gan_cmd(checkpoint_path: Path, out_path: Path, half: bool) -> None:
    """Strip a checkpoint to what inference needs (g_ema, d, latent_avg), e.g. to ship it."""
    from gan2shape.errors import CheckpointError
    from gan2shape.stylegan2.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(checkpoint_path)
    if ckpt.d is None:
        raise CheckpointError(
            f"{checkpoint_path} has no discriminator ('d'), which the method needs: export a "
            "checkpoint that has one (a training checkpoint.pt or an official file)"
        )
    extra = {k: v for k, v in (ckpt.extra or {}).items() if k != "gan2shape_train"}
    train = (ckpt.extra or {}).get("gan2shape_train", {})
    if "images_seen" in train:
        extra["images_seen"] = int(train["images_seen"])
    save_checkpoint(out_path, ckpt.g_ema, ckpt.d, latent_avg=ckpt.latent_avg, extra=extra, half=half)
    click.echo(
        json.dumps(
            {
                "out": str(out_path),
                "bytes": out_path.stat().st_size,
                "config": str(ckpt.config),
                **({"images_seen": extra["images_seen"]} if "images_seen" in extra else {}),
            }
        )
    )


@main.command("train-pose")
@_PARAMS_OPTION
@_SET_OPTION
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Output 'pose' artifact (.h5): the regressor and its held-out accuracy.",
)
@click.option(
    "--images",
    "n_images",
    type=int,
    default=40000,
    show_default=True,
    help="Freshly rendered heads (params' heads section) to train on.",
)
@click.option("--steps", type=int, default=4000, show_default=True, help="Adam steps (batch 256).")
@click.option("--seed", type=int, default=0, show_default=True)
@_DEVICE_OPTION
@click.pass_context
def train_pose_cmd(
    ctx: click.Context,
    params_path: Path,
    overrides: tuple[str, ...],
    out_path: Path,
    n_images: int,
    steps: int,
    seed: int,
    device: str,
) -> None:
    """Train the heads' pose regressor (pitch and yaw from an image), the step-2 bench's instrument."""
    from gan2shape.device import resolve_device
    from gan2shape.evaluate.pose import save_pose_regressor, train_pose_regressor

    params, text = _load(params_path, overrides)
    for name, value in (("--images", n_images), ("--steps", steps)):
        if value < 2:
            raise click.UsageError(f"{name} must be >= 2, got {value}")
    net, report = train_pose_regressor(
        params.heads,
        n_images=n_images,
        steps=steps,
        seed=seed,
        device=resolve_device(device),
        progress=ctx.obj["progress"],
    )
    save_pose_regressor(out_path, net, report, params_text=text)
    click.echo(json.dumps({"out": str(out_path), "held_out": report["held_out"], "seconds": report["seconds"]}))


@main.command("pretrain-encoder")
@_PARAMS_OPTION
@_SET_OPTION
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Output 'encoder' artifact (.h5), for method.encoder_init.",
)
@_DEVICE_OPTION
@click.pass_context
def pretrain_encoder_cmd(
    ctx: click.Context, params_path: Path, overrides: tuple[str, ...], out_path: Path, device: str
) -> None:
    """Pre-train the inversion encoder E on method.checkpoint's own image pairs (pretrain_encoder section)."""
    from gan2shape.device import resolve_device
    from gan2shape.errors import CheckpointError
    from gan2shape.method.encoder import pretrain_encoder, save_encoder
    from gan2shape.stylegan2.checkpoint import load_checkpoint

    params, text = _load(params_path, overrides)
    m = params.method
    if not m.relative_enc:
        raise click.UsageError("pretrain-encoder trains the relative encoding (method.relative_enc=true)")
    ckpt = load_checkpoint(m.checkpoint, device=resolve_device(device))
    if ckpt.d is None:
        raise CheckpointError(
            f"{m.checkpoint} has no discriminator ('d'); pre-training needs its features: give a "
            "checkpoint that holds one"
        )
    g, d = ckpt.g_ema.eval().requires_grad_(False), ckpt.d.eval().requires_grad_(False)
    encoder, report = pretrain_encoder(
        g,
        d,
        params.pretrain_encoder,
        image_size=m.image_size,
        enc_nf=m.enc_nf,
        offset=m.offset,
        f1_d=m.f1_d,
        feature_blocks=m.perceptual_blocks,
        progress=ctx.obj["progress"],
    )
    save_encoder(
        out_path, encoder, offset=m.offset, f1_d=m.f1_d, checkpoint=m.checkpoint, report=report, params_text=text
    )
    click.echo(
        json.dumps(
            {
                "out": str(out_path),
                "bytes": out_path.stat().st_size,
                **{k: v for k, v in report.items() if k != "loss_history"},
            }
        )
    )


@main.command("diagnose-step2")
@_PARAMS_OPTION
@_SET_OPTION
@click.option(
    "--pose",
    "pose_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    required=True,
    help="The pose regressor (gan2shape train-pose).",
)
@click.option(
    "--instances",
    "instances_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    required=True,
    help="The shard's instances.h5 (its latents are measured too).",
)
@click.option(
    "--run",
    "run_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="A reconstruct folder: its stage's pseudo.h5 and projected.h5 are measured.",
)
@click.option("--stage", type=int, default=1, show_default=True, help="The stage of --run.")
@click.option(
    "--heads",
    "heads_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="The heads file the instances were projected from: E is also trained on their true heads, "
    "turned (ground-truth pseudo-samples).",
)
@click.option(
    "--gt-samples",
    type=int,
    default=None,
    help="Ground-truth pseudo-samples per instance (default: the profile's pseudo-sample count).",
)
@click.option(
    "--free-samples",
    type=int,
    default=64,
    show_default=True,
    help="Pseudo-samples per instance also projected with a free latent offset (0: skip).",
)
@click.option("--free-steps", type=int, default=200, show_default=True)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Output folder: step2_bench.json and image sheets.",
)
@_DEVICE_OPTION
@click.pass_context
def diagnose_step2_cmd(
    ctx: click.Context,
    params_path: Path,
    overrides: tuple[str, ...],
    pose_path: Path,
    instances_path: Path,
    run_dir: Path | None,
    stage: int,
    heads_path: Path | None,
    gt_samples: int | None,
    free_samples: int,
    free_steps: int,
    out_dir: Path,
    device: str,
) -> None:
    """The step-2 bench: edit gain of the instances' latents and the follow ratios of step 2's projected
    samples (encoder and free offsets) against the turns they were asked for."""
    from gan2shape.device import resolve_device
    from gan2shape.diagnose.step2 import run_diagnose_step2

    params, text = _load(params_path, overrides)
    for name, value, low in (
        ("--stage", stage, 1),
        ("--free-samples", free_samples, 0),
        ("--free-steps", free_steps, 1),
        ("--gt-samples", gt_samples if gt_samples is not None else 2, 2),
    ):
        if value < low:
            raise click.UsageError(f"{name} must be >= {low}, got {value}")
    result = run_diagnose_step2(
        params,
        text,
        pose_path=pose_path,
        instances_path=instances_path,
        out_dir=out_dir,
        run_dir=run_dir,
        stage=stage,
        heads_path=heads_path,
        gt_samples=gt_samples,
        free_samples=free_samples,
        free_steps=free_steps,
        device=resolve_device(device),
        progress=ctx.obj["progress"],
    )
    summary = {
        "out": str(out_dir / "step2_bench.json"),
        "edit_gain": result["edit"]["gain"],
        "typicality": result["typicality"],
    }
    for source in ("run", "gt_turned"):
        if source in result:
            summary[source] = {k: result[source][k] for k in ("ratio_encoder", "ratio_free") if k in result[source]}
            summary[source]["encoder_r"] = result[source]["encoder"]["r"]
    click.echo(json.dumps(summary))


# ----- GAN2Shape method (gan2shape.method.steps / reconstruct) ----------------------------------

_PATH_IN = dict(type=click.Path(dir_okay=False, exists=True, path_type=Path))
_PATH_OUT = dict(type=click.Path(dir_okay=False, path_type=Path))
_INIT_OPTION = click.option(
    "--init",
    "init_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="A joint-mode shape.h5 (joint pre-training): every instance's networks start from it.",
)
_VIEW_DIST_OPTION = click.option(
    "--view-dist",
    "view_dist",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="A fitted view distribution (JSON, written by `gan2shape fit-views`); needed when method.view_source=heads.",
)


def _method_context(ctx: click.Context, params_path: Path, overrides: tuple[str, ...], device: str):
    from gan2shape.device import resolve_device
    from gan2shape.method.context import make_context

    params, text = _load(params_path, overrides)
    return make_context(
        params,
        text,
        device=resolve_device(device),
        progress=ctx.obj["progress"],
        nf=params.method.nf,
        enc_nf=params.method.enc_nf,
    )


def _views(view_dist: Path | None):
    if view_dist is None:
        return None
    from gan2shape.method.sampling import ViewDistribution

    return ViewDistribution.load(view_dist)


def _done(path: Path, start: float) -> None:
    click.echo(json.dumps({"out": str(path), "seconds": round(time.perf_counter() - start, 2)}))


@main.command("sample-instances")
@_PARAMS_OPTION
@_SET_OPTION
@click.option("--n", "n", type=int, default=None, help="Number of instances to sample (with --seed).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of z and noise (with --n).")
@click.option(
    "--latents", "latents_path", default=None, help="A latents artifact (gan2shape project) instead.", **_PATH_IN
)
@click.option("--limit", type=int, default=None, help="With --latents: use only the first N rows.")
@click.option(
    "--masks",
    "masks_path",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Foreground masks, matched by instance id, for method.prior.box_source=mask: an artifact with "
    "a 'mask' dataset (e.g. the heads test.h5 the latents came from) or a folder of <id>.png.",
)
@click.option("--out", "out_path", required=True, help="Output instances artifact (instances.h5).", **_PATH_OUT)
@_DEVICE_OPTION
@click.pass_context
def sample_instances_cmd(
    ctx: click.Context,
    params_path: Path,
    overrides: tuple[str, ...],
    n: int | None,
    seed: int,
    latents_path: Path | None,
    limit: int | None,
    masks_path: Path | None,
    out_path: Path,
    device: str,
) -> None:
    """Targets of one shard: GAN images, latents and fixed noise (sampled, or from projected latents),
    optionally with foreground masks (--masks)."""
    from gan2shape.device import resolve_device
    from gan2shape.method.instances import instances_from_latents, sample_instances, write_instances
    from gan2shape.stylegan2.checkpoint import load_checkpoint

    if (n is None) == (latents_path is None):
        raise click.UsageError("give exactly one of --n (sample with --seed) or --latents FILE")
    if n is not None and n < 1:
        raise click.UsageError(f"--n must be >= 1, got {n}")
    start = time.perf_counter()
    params, text = _load(params_path, overrides)
    g = load_checkpoint(params.method.checkpoint, device=resolve_device(device)).g_ema.eval().requires_grad_(False)
    if n is not None:
        inst = sample_instances(g, n, seed, params.method.image_size)
        attrs = {"source": "sampled", "seed": seed}
    else:
        inst = instances_from_latents(g, latents_path, params.method.image_size, limit=limit)
        attrs = {"source": str(latents_path)}
    if masks_path is not None:
        from gan2shape.method.masks import read_masks

        inst.mask = read_masks(masks_path, inst.ids, params.method.image_size).to(inst.image.device)
        attrs["masks"] = str(masks_path)
    write_instances(out_path, inst, params_text=text, attrs={**attrs, "checkpoint": params.method.checkpoint})
    _done(out_path, start)


@main.command("prior")
@_PARAMS_OPTION
@_SET_OPTION
@click.option("--instances", "instances_path", required=True, help="instances.h5 of the shard.", **_PATH_IN)
@click.option("--out", "out_path", required=True, help="Output: stage0/shape.h5.", **_PATH_OUT)
@_INIT_OPTION
@_DEVICE_OPTION
@click.pass_context
def prior_cmd(
    ctx: click.Context,
    params_path: Path,
    overrides: tuple[str, ...],
    instances_path: Path,
    out_path: Path,
    init_path: Path | None,
    device: str,
) -> None:
    """Stage 0: pre-train the depth nets to the shape prior (or start from joint pre-trained nets)."""
    from gan2shape.method.steps import run_prior

    start = time.perf_counter()
    mctx = _method_context(ctx, params_path, overrides, device)
    _done(run_prior(mctx, instances_path, out_path, init_path=init_path), start)


@main.command("step1")
@_PARAMS_OPTION
@_SET_OPTION
@click.option("--instances", "instances_path", required=True, help="instances.h5 of the shard.", **_PATH_IN)
@click.option("--shape", "shape_path", required=True, help="stage{k-1}/shape.h5.", **_PATH_IN)
@click.option("--out", "out_path", required=True, help="Output: stage{k}/albedo.h5.", **_PATH_OUT)
@_DEVICE_OPTION
@click.pass_context
def step1_cmd(
    ctx: click.Context,
    params_path: Path,
    overrides: tuple[str, ...],
    instances_path: Path,
    shape_path: Path,
    out_path: Path,
    device: str,
) -> None:
    """Step 1: fit the albedo nets (stage k = the shape's stage + 1)."""
    from gan2shape.method.steps import run_step1

    start = time.perf_counter()
    mctx = _method_context(ctx, params_path, overrides, device)
    _done(run_step1(mctx, instances_path, shape_path, out_path), start)


@main.command("pseudo")
@_PARAMS_OPTION
@_SET_OPTION
@click.option("--albedo", "albedo_path", required=True, help="stage{k}/albedo.h5.", **_PATH_IN)
@click.option("--out", "out_path", required=True, help="Output: stage{k}/pseudo.h5.", **_PATH_OUT)
@click.option(
    "--instances",
    "instances_path",
    default=None,
    help="The shard's instances.h5: when it holds masks (sample-instances --masks), each pseudo-sample "
    "is masked by the object's mask in its view.",
    **_PATH_IN,
)
@_VIEW_DIST_OPTION
@_DEVICE_OPTION
@click.pass_context
def pseudo_cmd(
    ctx: click.Context,
    params_path: Path,
    overrides: tuple[str, ...],
    albedo_path: Path,
    out_path: Path,
    instances_path: Path | None,
    view_dist: Path | None,
    device: str,
) -> None:
    """Step 2a: render pseudo-samples under random views and lights."""
    from gan2shape.method.steps import run_pseudo

    start = time.perf_counter()
    mctx = _method_context(ctx, params_path, overrides, device)
    _done(run_pseudo(mctx, albedo_path, out_path, views=_views(view_dist), instances_path=instances_path), start)


@main.command("invert")
@_PARAMS_OPTION
@_SET_OPTION
@click.option("--instances", "instances_path", required=True, help="instances.h5 of the shard.", **_PATH_IN)
@click.option("--pseudo", "pseudo_path", required=True, help="stage{k}/pseudo.h5.", **_PATH_IN)
@click.option("--out", "out_path", required=True, help="Output: stage{k}/projected.h5.", **_PATH_OUT)
@click.option(
    "--encoder-init",
    "encoder_init",
    default=None,
    help="stage{k-1}/projected.h5: start E from its encoder (stages k >= 2; the reference keeps E).",
    **_PATH_IN,
)
@_DEVICE_OPTION
@click.pass_context
def invert_cmd(
    ctx: click.Context,
    params_path: Path,
    overrides: tuple[str, ...],
    instances_path: Path,
    pseudo_path: Path,
    out_path: Path,
    encoder_init: Path | None,
    device: str,
) -> None:
    """Step 2b: train the inversion encoders, then collect the projected samples."""
    from gan2shape.method.steps import run_invert

    start = time.perf_counter()
    mctx = _method_context(ctx, params_path, overrides, device)
    _done(run_invert(mctx, instances_path, pseudo_path, out_path, encoder_init=encoder_init), start)


@main.command("step3")
@_PARAMS_OPTION
@_SET_OPTION
@click.option("--instances", "instances_path", required=True, help="instances.h5 of the shard.", **_PATH_IN)
@click.option("--albedo", "albedo_path", required=True, help="stage{k}/albedo.h5 (the networks).", **_PATH_IN)
@click.option("--projected", "projected_path", required=True, help="stage{k}/projected.h5.", **_PATH_IN)
@click.option("--out", "out_path", required=True, help="Output: stage{k}/shape.h5.", **_PATH_OUT)
@_DEVICE_OPTION
@click.pass_context
def step3_cmd(
    ctx: click.Context,
    params_path: Path,
    overrides: tuple[str, ...],
    instances_path: Path,
    albedo_path: Path,
    projected_path: Path,
    out_path: Path,
    device: str,
) -> None:
    """Step 3: refine the depth, albedo, view and light nets."""
    from gan2shape.method.steps import run_step3

    start = time.perf_counter()
    mctx = _method_context(ctx, params_path, overrides, device)
    _done(run_step3(mctx, instances_path, albedo_path, projected_path, out_path), start)


@main.command("reconstruct")
@_PARAMS_OPTION
@_SET_OPTION
@click.option("--instances", "instances_path", required=True, help="instances.h5 of the shard.", **_PATH_IN)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The shard's output folder (stage0/, stage1/, ...).",
)
@_VIEW_DIST_OPTION
@_INIT_OPTION
@_DEVICE_OPTION
@click.pass_context
def reconstruct_cmd(
    ctx: click.Context,
    params_path: Path,
    overrides: tuple[str, ...],
    instances_path: Path,
    out_dir: Path,
    view_dist: Path | None,
    init_path: Path | None,
    device: str,
) -> None:
    """All stages of one shard, resuming from the first missing or invalid artifact."""
    from gan2shape.method.reconstruct import run_reconstruct

    mctx = _method_context(ctx, params_path, overrides, device)
    summary = run_reconstruct(mctx, instances_path, out_dir, views=_views(view_dist), init_path=init_path)
    click.echo(json.dumps(summary))


@main.command("fit-views")
@click.option(
    "--heads",
    "heads_path",
    required=True,
    **_PATH_IN,
    help="A split of the synthetic heads (e.g. results/heads64/train.h5); its ground-truth views are read.",
)
@click.option(
    "--out", "out_path", required=True, help="Output: the view distribution (JSON) for --view-dist.", **_PATH_OUT
)
def fit_views_cmd(heads_path: Path, out_path: Path) -> None:
    """Fit the pseudo-samples' view distribution (a normal over the six view parameters) to the ground-truth
    views of a heads split, for `--set method.view_source=heads --view-dist OUT` (pseudo, reconstruct). Fit it
    on the train split: it carries the test views' statistics into the method."""
    from gan2shape.method.sampling import estimate_view_light_from_heads

    start = time.perf_counter()
    views, _ = estimate_view_light_from_heads(heads_path)
    _done(views.save(out_path), start)


@main.command("split-instances")
@click.option(
    "--instances", "instances_path", required=True, help="The run's instances.h5 (every instance).", **_PATH_IN
)
@click.option("--shard", type=int, required=True, help="Index of the shard to write (0-based).")
@click.option("--shard-size", type=int, default=None, help="Instances per shard; default: one shard of all.")
@click.option("--out", "out_path", required=True, help="Output: the shard's instances.h5.", **_PATH_OUT)
def split_instances_cmd(instances_path: Path, shard: int, shard_size: int | None, out_path: Path) -> None:
    """One shard of a run's instances (consecutive rows), for its own chain of method steps."""
    from gan2shape.shards import split_instances

    if shard_size is not None and shard_size < 1:
        raise click.UsageError(f"--shard-size must be >= 1, got {shard_size}")
    start = time.perf_counter()
    try:
        split_instances(instances_path, out_path, shard, shard_size)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    _done(out_path, start)


@main.command("collect-exports")
@click.argument("shard_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Output folder: one sub-folder per instance id, hard links to the shards' files.",
)
def collect_exports_cmd(shard_dirs: tuple[Path, ...], out_dir: Path) -> None:
    """Join the export folders of a run's shards (SHARD_DIRS) into one folder of instance folders."""
    from gan2shape.shards import collect_exports

    try:
        ids = collect_exports(shard_dirs, out_dir)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps({"out": str(out_dir), "instances": len(ids)}))


@main.command("export")
@_PARAMS_OPTION
@_SET_OPTION
@click.option(
    "--shape",
    "shape_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="A final stage{K}/shape.h5 of `gan2shape reconstruct`.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Output folder: one sub-folder per instance id.",
)
@click.option("--id", "ids", multiple=True, help="Export only these instance ids (repeatable).")
@click.option(
    "--projected",
    "projected_path",
    default=None,
    help="The same stage's projected.h5 (its trained encoder): with --instances, also write the "
    "GAN-refined media (rotate_gan.gif, relight_gan.gif, ...).",
    **_PATH_IN,
)
@click.option(
    "--instances",
    "instances_path",
    default=None,
    help="The shard's instances.h5 (latents, noise): needed with --projected.",
    **_PATH_IN,
)
@_DEVICE_OPTION
@click.pass_context
def export_cmd(
    ctx: click.Context,
    params_path: Path,
    overrides: tuple[str, ...],
    shape_path: Path,
    out_dir: Path,
    ids: tuple[str, ...],
    projected_path: Path | None,
    instances_path: Path | None,
    device: str,
) -> None:
    """Depth/normal/albedo/shading PNGs, textured OBJ mesh, rotation and relighting GIFs (and, with
    --projected and --instances, their GAN-refined versions, inverted back into the GAN)."""
    from gan2shape.export import export_instances
    from gan2shape.render import Camera

    if (projected_path is None) != (instances_path is None):
        raise click.UsageError("give both --projected and --instances (for the GAN-refined media) or neither")
    params, _ = _load(params_path, overrides)
    r = params.render
    camera = Camera(params.method.image_size, r.fov_deg, r.min_depth, r.max_depth, r.rot_center_depth)
    written = export_instances(shape_path, out_dir, camera, ids=list(ids) or None, progress=ctx.obj["progress"])
    if projected_path is None:
        log.info(
            "GAN-refined media skipped: pass --projected stageK/projected.h5 --instances instances.h5 to "
            "write rotate_gan.gif, relight_gan.gif and their grid/strip"
        )
    else:
        from gan2shape.device import resolve_device
        from gan2shape.method.gan_refine import export_gan_refined
        from gan2shape.stylegan2.checkpoint import load_checkpoint

        m = params.method
        g = load_checkpoint(m.checkpoint, device=resolve_device(device)).g_ema.eval().requires_grad_(False)
        refined = export_gan_refined(
            shape_path,
            projected_path,
            instances_path,
            out_dir,
            camera,
            g,
            f1_d=m.f1_d,
            relative_enc=m.relative_enc,
            offset=m.offset,
            ids=list(ids) or None,
            progress=ctx.obj["progress"],
        )
        for name, files in refined.items():
            written.setdefault(name, {}).update(files)
    click.echo(json.dumps({k: sorted(str(p) for p in v.values()) for k, v in written.items()}, indent=1))


if __name__ == "__main__":  # pragma: no cover
    main()

"""GAN inversion: find w (or w+) and noise maps that make a StyleGAN2 generator draw given images.

The projector of Karras et al. (2020b, StyleGAN2 section 5 / appendix): start at the mean w,
optimise with Adam under a cosine ramp-up/ramp-down learning rate, add Gaussian noise to w whose
strength decays to zero over the first ``noise_ramp`` of the steps, penalise spatial
autocorrelation of the noise maps at all scales and renormalise them after every step.
Optionally (``latent_prior``, ``layer_tie``; not in the reference) the latent is kept where the
mapping network puts its samples: a Gaussian prior on w in the mapping's whitened space, and for
w+ a pull of every layer's w toward their mean (``latent_penalties``). A latent far from there
reproduces the image but does not respond to latent edits as the GAN's samples do (step 2's
latent offsets barely turn such an instance).
The image loss is ``l1_weight * L1 + feature_weight * feature distance``. VGG/LPIPS weights cannot
be downloaded here, so the default feature source is the GAN's own discriminator (its first
``feature_blocks`` blocks, each feature vector normalised over channels as in LPIPS); any other
callable can be passed.

Images of a batch are optimised jointly but independently: every loss term is per image and
summed, the noise statistics are per image, and Adam is element-wise.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from gan2shape.config import ProjectConfig
from gan2shape.errors import ArtifactError, ConfigError

__all__ = [
    "FeatureFn",
    "discriminator_features",
    "feature_distance",
    "latent_penalties",
    "lr_schedule",
    "mean_latent_stats",
    "noise_regularize",
    "normalize_noise_",
    "project_file",
    "project_images",
    "psnr",
    "to_uint8",
    "w_whitening",
]

log = logging.getLogger(__name__)

#: images (N, 3, S, S) in [-1, 1] -> list of feature maps (N, C_k, H_k, W_k)
FeatureFn = Callable[[Tensor], Sequence[Tensor]]


# --------------------------------------------------------------------------------------------
# Pure pieces
# --------------------------------------------------------------------------------------------


def psnr(a: Tensor, b: Tensor) -> Tensor:
    """Peak signal-to-noise ratio per image, images in [-1, 1] mapped to [0, 1].

    a, b: (N, C, H, W) float, values in [-1, 1]. Returns (N,) float32 dB,
    10 log10(1 / MSE) with MSE over C, H, W of the [0, 1] images (inf for identical images).
    """
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"psnr: need two (N, C, H, W) tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    mse = ((a.float() - b.float()) / 2).square().mean(dim=(1, 2, 3))
    return -10.0 * torch.log10(mse)


def to_uint8(images: Tensor) -> Tensor:
    """(N, 3, S, S) float in [-1, 1] (clipped) -> (N, 3, S, S) uint8 in [0, 255], rounded."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def lr_schedule(t: float, lr: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    """Learning rate at progress t in [0, 1]: linear ramp-up over ``rampup``, cosine ramp-down
    over the last ``rampdown`` (the reference projector's schedule)."""
    down = min(1.0, (1.0 - t) / rampdown)
    down = 0.5 - 0.5 * math.cos(down * math.pi)
    return lr * down * min(1.0, t / rampup)


def noise_regularize(noises: Sequence[Tensor]) -> Tensor:
    """Per-image autocorrelation penalty of noise maps, summed over a pyramid of scales.

    noises: list of (N, 1, r, r) maps (r a power of two). At each scale (r, r/2, ... down to 8,
    or the map's own size if smaller) adds mean(x * roll(x, 1, W))^2 + mean(x * roll(x, 1, H))^2,
    means per image. Returns (N,) float32, >= 0, zero for maps without lag-1 correlation.
    """
    total: Tensor | None = None
    for noise in noises:
        x = noise.float()
        while True:
            term = (x * x.roll(1, dims=3)).mean(dim=(1, 2, 3)).square()
            term = term + (x * x.roll(1, dims=2)).mean(dim=(1, 2, 3)).square()
            total = term if total is None else total + term
            size = x.shape[2]
            if size <= 8:
                break
            x = x.reshape(x.shape[0], 1, size // 2, 2, size // 2, 2).mean(dim=(3, 5))
    if total is None:
        raise ValueError("noise_regularize: no noise maps given")
    return total


@torch.no_grad()
def normalize_noise_(noises: Sequence[Tensor]) -> None:
    """In place: each image's noise map to zero mean, unit (unbiased) std. noises: (N, 1, r, r)."""
    for noise in noises:
        mean = noise.mean(dim=(1, 2, 3), keepdim=True)
        std = noise.std(dim=(1, 2, 3), keepdim=True)
        noise.sub_(mean).div_(std)


def feature_distance(a: Sequence[Tensor], b: Sequence[Tensor], eps: float = 1e-10) -> Tensor:
    """LPIPS-style distance without learned weights.

    a, b: lists of feature maps (N, C_k, H_k, W_k), pairwise equal shapes. Each pixel's feature
    vector is scaled to unit length over channels; returns (N,) = sum over maps of the spatial
    mean of the squared difference summed over channels (each map contributes a value in [0, 4]).
    """
    if len(a) != len(b) or not a:
        raise ValueError(f"feature_distance: need two equally long, non-empty lists, got {len(a)} and {len(b)}")
    total: Tensor | None = None
    for fa, fb in zip(a, b):
        if fa.shape != fb.shape or fa.ndim != 4:
            raise ValueError(
                f"feature_distance: maps must be (N, C, H, W) of one shape, got {tuple(fa.shape)}, {tuple(fb.shape)}"
            )
        fa = fa.float()
        fb = fb.float()
        na = fa * torch.rsqrt(fa.square().sum(1, keepdim=True) + eps)
        nb = fb * torch.rsqrt(fb.square().sum(1, keepdim=True) + eps)
        d = (na - nb).square().sum(1).mean(dim=(1, 2))
        total = d if total is None else total + d
    return total


def discriminator_features(discriminator: nn.Module, n_blocks: int) -> FeatureFn:
    """The default feature source: outputs of the discriminator's first n_blocks blocks."""
    if not 1 <= n_blocks <= discriminator.n_blocks:
        raise ConfigError(
            "project.feature_blocks", f"must be in [1, {discriminator.n_blocks}] for this discriminator, got {n_blocks}"
        )
    if n_blocks == discriminator.n_blocks:
        log.warning(
            "feature_blocks=%d includes the discriminator's final block, whose minibatch-stddev "
            "feature mixes the images of a batch; use at most %d for independent projections",
            n_blocks,
            n_blocks - 1,
        )
    return lambda images: discriminator.features(images, n_blocks)


@torch.no_grad()
def mean_latent_stats(generator: nn.Module, n: int, seed: int, device: torch.device | str) -> tuple[Tensor, float]:
    """Mean and spread of w over n latents z ~ N(0, I) drawn with ``seed``.

    Returns (w_mean (style_dim,) float32, w_std) with w_std = sqrt(sum ||w_i - w_mean||^2 / n),
    the scale of the projector's latent noise.
    """
    rng = torch.Generator(device=device)
    rng.manual_seed(seed)
    ws = []
    for start in range(0, n, 4096):
        z = torch.randn(min(4096, n - start), generator.style_dim, generator=rng, device=device)
        ws.append(generator.get_latent(z))
    w = torch.cat(ws)
    mean = w.mean(0)
    std = float(((w - mean).square().sum() / n).sqrt())
    return mean, std


@torch.no_grad()
def w_whitening(generator: nn.Module, n: int, seed: int, device: torch.device | str) -> tuple[Tensor, Tensor]:
    """The mapping's output distribution as a Gaussian: mean and whitening matrix of w.

    Draws n latents z ~ N(0, I) with ``seed``. Returns (mean (D,), white (D, D)) float32 with
    ``(w - mean) @ white`` of identity covariance over the draws (white = C^(-1/2), eigenvalues of
    the covariance C floored at 1e-6 of the largest).
    """
    rng = torch.Generator(device=device)
    rng.manual_seed(seed)
    ws = [
        generator.get_latent(torch.randn(min(4096, n - a), generator.style_dim, generator=rng, device=device))
        for a in range(0, n, 4096)
    ]
    w = torch.cat(ws).double()
    mean = w.mean(0)
    cov = (w - mean).T @ (w - mean) / max(1, n - 1)
    vals, vecs = torch.linalg.eigh(cov)
    vals = vals.clamp_min(float(vals.max()) * 1e-6)
    white = vecs @ torch.diag(vals.rsqrt()) @ vecs.T
    return mean.float(), white.float()


def latent_penalties(latent: Tensor, mean: Tensor, white: Tensor) -> tuple[Tensor, Tensor]:
    """How atypical a projection's latent is, per image, in the mapping's whitened space.

    latent: (N, D) w or (N, L, D) w+; mean (D,), white (D, D) from ``w_whitening``.
    Returns (prior (N,), tie (N,)): prior = mean over layers and dimensions of the squared
    whitened w (about 1 for a sampled w, 0 at the mean w); tie = the same of each layer's deviation
    from the mean over layers (0 for a single w repeated; always 0 for (N, D) input).
    """
    x = latent if latent.dim() == 3 else latent[:, None]
    white_x = (x - mean) @ white
    prior = white_x.square().mean(dim=(1, 2))
    tie = (white_x - white_x.mean(1, keepdim=True)).square().mean(dim=(1, 2))
    return prior, tie


# --------------------------------------------------------------------------------------------
# Projection
# --------------------------------------------------------------------------------------------


def _check_images(images: Tensor, size: int) -> None:
    if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[2:]) != (size, size):
        raise ValueError(
            f"project_images: images must be (N, 3, {size}, {size}) (the generator's size), got {tuple(images.shape)}"
        )
    if not images.is_floating_point():
        raise ValueError(
            f"project_images: images must be float in [-1, 1], got {images.dtype}; map uint8 with x / 127.5 - 1"
        )
    lo, hi = float(images.min()), float(images.max())
    if lo < -1.001 or hi > 1.001:
        raise ValueError(
            f"project_images: images must lie in [-1, 1], found [{lo:.3f}, {hi:.3f}]; map uint8 with x / 127.5 - 1"
        )


def _project_batch(
    generator: nn.Module,
    target: Tensor,
    config: ProjectConfig,
    features: FeatureFn | None,
    w_mean: Tensor,
    w_std: float,
    rng: torch.Generator,
    progress_bar: Any,
    whitening: tuple[Tensor, Tensor] | None = None,
) -> dict[str, Any]:
    """Optimise one batch; see :func:`project_images` for the meaning of the outputs."""
    device = target.device
    n = target.shape[0]
    n_latent = generator.n_latent
    shapes = [tuple(getattr(generator.noises, f"noise_{i}").shape[2:]) for i in range(generator.num_layers)]
    noises = [torch.randn(n, 1, h, w, generator=rng, device=device) for h, w in shapes]
    latent = w_mean.detach().clone()[None].repeat(n, 1)
    if config.w_plus:
        latent = latent[:, None].repeat(1, n_latent, 1)
    latent.requires_grad_(True)
    for noise in noises:
        noise.requires_grad_(True)
    variables = [latent, *noises]
    optim = torch.optim.Adam(variables, lr=config.lr)
    with torch.no_grad():
        target_feats = [f.detach() for f in features(target)] if features is not None else None
        init_image, _ = generator([latent], input_is_latent=True, noise=noises)
        psnr_init = psnr(init_image.clamp(-1, 1), target)
    history = torch.zeros(config.steps, device=device)

    for i in range(config.steps):
        t = i / config.steps
        for group in optim.param_groups:
            group["lr"] = lr_schedule(t, config.lr)
        strength = w_std * config.noise_strength * max(0.0, 1.0 - t / config.noise_ramp) ** 2
        latent_n = latent + strength * torch.randn(latent.shape, generator=rng, device=device)
        image, _ = generator([latent_n], input_is_latent=True, noise=noises)
        loss = config.l1_weight * (image - target).abs().mean(dim=(1, 2, 3))
        if target_feats is not None and config.feature_weight > 0:
            loss = loss + config.feature_weight * feature_distance(features(image), target_feats)
        if config.noise_regularize > 0:
            loss = loss + config.noise_regularize * noise_regularize(noises)
        if whitening is not None:
            prior, tie = latent_penalties(latent, *whitening)
            loss = loss + config.latent_prior * prior + config.layer_tie * tie
        # Per-image losses are summed: each image's variables get exactly its own gradient.
        grads = torch.autograd.grad(loss.sum(), variables)
        for v, g in zip(variables, grads):
            v.grad = g
        optim.step()
        normalize_noise_(noises)
        history[i] = loss.detach().mean()
        if progress_bar is not None:
            progress_bar.update(1)

    with torch.no_grad():
        final_latent = latent.detach() if config.w_plus else latent.detach()[:, None].repeat(1, n_latent, 1)
        final_noises = [noise.detach().clone() for noise in noises]
        image, _ = generator([final_latent], input_is_latent=True, noise=final_noises)
    return {
        "latents": final_latent.float(),
        "noises": [noise.float() for noise in final_noises],
        "images": image.float(),
        "psnr": psnr(image.clamp(-1, 1), target),
        "psnr_init": psnr_init,
        "loss_history": history,
    }


def project_images(
    generator: nn.Module,
    discriminator: nn.Module | None,
    images: Tensor,
    config: ProjectConfig,
    *,
    device: torch.device | str,
    features: FeatureFn | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Invert images into the generator (w or w+ and per-layer noise).

    generator: a StyleGAN2 Generator (moved to ``device``, put in eval mode; its weights are not
        changed: only latents and noise are optimised).
    discriminator: its Discriminator, the default feature source (may be None when ``features``
        is given or config.feature_weight is 0).
    images: (N, 3, S, S) float in [-1, 1], S = generator.size; optimised in batches of
        config.batch_size, all images of a batch jointly but independently.
    features: images -> list of feature maps; overrides the discriminator features.
    Returns a dict (tensors on the CPU):
      latents (N, n_latent, style_dim) float32 w+ (the single w repeated when config.w_plus is
        False); noises: list of num_layers tensors (N, 1, r, r) float32; images (N, 3, S, S)
        float32 reconstructions (not clamped); psnr (N,) dB of the reconstructions;
      psnr_init (N,) dB at the starting point (mean w, initial noise); loss_history (steps,)
        mean per-image loss at each step; feature_source (str); seconds (float).
    """
    device = torch.device(device)
    generator = generator.to(device).eval()
    images = images.to(device)
    _check_images(images, generator.size)
    if features is not None:
        source = f"custom ({getattr(features, '__name__', type(features).__name__)})"
    elif config.feature_weight > 0:
        if discriminator is None:
            raise ValueError(
                "project_images: project.feature_weight > 0 needs a discriminator (or a features "
                "callable); set project.feature_weight: 0 for an L1-only projection"
            )
        discriminator = discriminator.to(device).eval()
        features = discriminator_features(discriminator, config.feature_blocks)
        source = f"discriminator (first {config.feature_blocks} blocks)"
    else:
        source = "none (feature_weight = 0)"
    log.info("projecting %d images, %d steps, feature loss: %s", images.shape[0], config.steps, source)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    w_mean, w_std = mean_latent_stats(generator, config.mean_latent_samples, config.seed, device)
    whitening = None
    if config.latent_prior > 0 or config.layer_tie > 0:
        whitening = w_whitening(generator, config.mean_latent_samples, config.seed, device)
    rng = torch.Generator(device=device)
    rng.manual_seed(config.seed + 1)

    from gan2shape.progress import Progress

    n = images.shape[0]
    n_batches = math.ceil(n / config.batch_size)
    bar = Progress(n_batches * config.steps, "project", unit="step", bar=progress, dynamic_ncols=True)
    t0 = time.perf_counter()
    parts: list[dict[str, Any]] = []
    history_sum = torch.zeros(config.steps, device=device)
    for start in range(0, n, config.batch_size):
        batch = images[start : start + config.batch_size]
        part = _project_batch(generator, batch, config, features, w_mean, w_std, rng, bar, whitening)
        history_sum += part.pop("loss_history") * batch.shape[0]
        parts.append({k: ([x.cpu() for x in v] if isinstance(v, list) else v.cpu()) for k, v in part.items()})
    bar.close()
    seconds = time.perf_counter() - t0
    result: dict[str, Any] = {
        "latents": torch.cat([p["latents"] for p in parts]),
        "noises": [torch.cat([p["noises"][i] for p in parts]) for i in range(len(parts[0]["noises"]))],
        "images": torch.cat([p["images"] for p in parts]),
        "psnr": torch.cat([p["psnr"] for p in parts]),
        "psnr_init": torch.cat([p["psnr_init"] for p in parts]),
        "loss_history": (history_sum / n).cpu(),
        "feature_source": source,
        "seconds": seconds,
    }
    log.info(
        "projected %d images in %.1f s: PSNR %.2f dB (start %.2f dB)",
        n,
        seconds,
        float(result["psnr"].mean()),
        float(result["psnr_init"].mean()),
    )
    return result


def project_file(
    checkpoint_path: str | Path,
    images_h5: str | Path,
    out_path: str | Path,
    config: ProjectConfig,
    *,
    device: torch.device | str,
    limit: int | None = None,
    progress: bool = True,
    params_text: str | None = None,
) -> Path:
    """Project the ``image`` dataset of an HDF5 artifact and write a ``latents`` artifact.

    images_h5: artifact with ``image`` (N, 3, S, S) uint8 RGB (a 'heads' artifact or any other
    kind with that dataset); the first ``limit`` images when given.
    out_path receives datasets latent (N, n_latent, style_dim) float32, noise_<i> (N, 1, r, r)
    float32 for i < num_layers, image_recon (N, 3, S, S) uint8, psnr (N,) float32, the input's
    ids, and attrs checkpoint, source_images, project_config, feature_source, device, seconds.
    """
    from gan2shape.artifacts import read_artifact, write_artifact
    from gan2shape.stylegan2.checkpoint import load_checkpoint

    device = torch.device(device)
    if limit is not None and limit < 1:
        raise ValueError(f"project_file: limit must be >= 1, got {limit}")
    with read_artifact(images_h5, require=("image",)) as art:
        count = art.n if limit is None else min(limit, art.n)
        raw = art.array("image", slice(0, count))
        ids = art.ids[:count]
    if raw.dtype != np.uint8 or raw.ndim != 4 or raw.shape[1] != 3:
        raise ArtifactError(f"{images_h5}: dataset 'image' must be (N, 3, S, S) uint8 RGB, got {raw.shape} {raw.dtype}")
    images = torch.from_numpy(raw).float() / 127.5 - 1.0

    loaded = load_checkpoint(checkpoint_path, device=device)
    generator = loaded.g_ema
    if generator.size != images.shape[-1]:
        raise ArtifactError(
            f"{images_h5} holds {images.shape[-1]}px images but {checkpoint_path} generates {generator.size}px; "
            "project images of the generator's size"
        )
    result = project_images(generator, loaded.d, images, config, device=device, progress=progress)
    arrays: dict[str, Any] = {
        "latent": result["latents"].float(),
        "image_recon": to_uint8(result["images"]),
        "psnr": result["psnr"].float(),
    }
    for i, noise in enumerate(result["noises"]):
        arrays[f"noise_{i}"] = noise.float()
    attrs = {
        "checkpoint": str(checkpoint_path),
        "source_images": str(images_h5),
        "project_config": dataclasses.asdict(config),
        "feature_source": result["feature_source"],
        "device": str(device),
        "seconds": result["seconds"],
        "psnr_mean": float(result["psnr"].mean()),
        "psnr_init_mean": float(result["psnr_init"].mean()),
    }
    return write_artifact(out_path, "latents", arrays, ids=ids, params_text=params_text, attrs=attrs)

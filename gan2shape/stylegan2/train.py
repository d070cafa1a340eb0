"""StyleGAN2 training on an HDF5 image set (``gan2shape train-gan``).

The loop of Karras et al. (2020, "Analyzing and improving the image quality of StyleGAN"):
non-saturating logistic loss, lazy R1 on reals every ``r1_every`` D steps (with the Adam lr/beta
adjustment for lazy regularisation), style mixing, and an EMA generator whose half-life is given
in thousands of images. Path-length regularisation is not used (the low-resolution
configurations of StyleGAN2-ADA also train without it).

Speed: the whole data set sits in device memory as uint8 and batches are drawn there; all random
numbers come from one seeded ``torch.Generator`` on the device; losses stay on the device and are
synchronised only every ``log_every`` steps. bf16 autocast (CUDA only) covers the main G and D
passes; R1 always runs in float32 and eagerly, because its double backward must not go through a
compiled graph.

Resuming: ``out_dir/checkpoint.pt`` (the official rosinality layout plus our training state under
``extra``) is written atomically every ``checkpoint_every_kimg``, at the end of every run and on
SIGTERM/SIGINT; a new run with the same architecture continues from it, bit for bit as if it had
never stopped (same seed, same device).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan2shape.atomic import remove_stray_temporaries, write_png
from gan2shape.config import GanConfig
from gan2shape.errors import ArtifactError, CheckpointError, ConfigError
from gan2shape.progress import StopRequest

__all__ = [
    "ARCH_KEYS",
    "GanTrainer",
    "build_networks",
    "d_logistic_loss",
    "discriminate_pair",
    "ema_beta",
    "ema_update_",
    "g_nonsaturating_loss",
    "lazy_adam",
    "load_training_images",
    "r1_penalty",
    "sample_grid",
    "train_gan",
]

log = logging.getLogger(__name__)

#: GanConfig fields that fix the networks' shapes; a checkpoint resumes only if they all match.
ARCH_KEYS = ("size", "style_dim", "n_mlp", "channel_multiplier", "channel_max")

_STATE_KEY = "gan2shape_train"  # our training state inside the checkpoint's ``extra``
_STATE_FORMAT = 1
_N_SAMPLES = 64  # 8 x 8 sample grid
_LATENT_AVG_SAMPLES = 4096


# --------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------


def _arch_kwargs(cls: type, config: GanConfig) -> dict[str, Any]:
    """Keyword arguments of the architecture that ``cls.__init__`` accepts."""
    params = inspect.signature(cls.__init__).parameters
    kwargs: dict[str, Any] = {"channel_multiplier": config.channel_multiplier}
    if "channel_max" in params:
        kwargs["channel_max"] = config.channel_max
    elif config.channel_max < 512:
        log.warning("this model.py has no channel_max; gan.channel_max=%d is ignored", config.channel_max)
    return kwargs


def build_networks(config: GanConfig, device: torch.device | str = "cpu") -> tuple[nn.Module, nn.Module, nn.Module]:
    """Freshly initialised (generator, discriminator, EMA generator) for ``config``.

    Initialisation draws from a CPU RNG seeded with ``config.seed`` (the caller's global RNG is
    left untouched), so the same config gives the same weights on every device. The EMA
    generator starts as an exact copy of the generator, in eval mode, without gradients.
    """
    from gan2shape.stylegan2.model import Discriminator, Generator

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        g = Generator(config.size, config.style_dim, config.n_mlp, **_arch_kwargs(Generator, config))
        d = Discriminator(config.size, **_arch_kwargs(Discriminator, config))
    g_ema = copy.deepcopy(g).eval().requires_grad_(False)
    return g.to(device), d.to(device), g_ema.to(device)


def lazy_adam(params, lr: float, reg_every: int, fused: bool = False) -> torch.optim.Adam:
    """Adam with betas (0, 0.99) adjusted for a regulariser applied every ``reg_every`` steps.

    With lazy regularisation each optimiser sees reg_every + 1 updates per reg_every minibatches,
    so lr and betas are rescaled by ratio = reg_every / (reg_every + 1) (Karras et al. 2020,
    appendix B): lr * ratio, betas ** ratio. reg_every = 0 means no regulariser (ratio 1).
    """
    ratio = reg_every / (reg_every + 1) if reg_every > 0 else 1.0
    return torch.optim.Adam(params, lr=lr * ratio, betas=(0.0**ratio, 0.99**ratio), eps=1e-8, fused=fused or None)


# --------------------------------------------------------------------------------------------
# Losses and EMA (pure functions)
# --------------------------------------------------------------------------------------------


def d_logistic_loss(real_pred: Tensor, fake_pred: Tensor) -> Tensor:
    """Discriminator logistic loss: mean softplus(-D(x)) + mean softplus(D(G(z))).

    real_pred, fake_pred: (N, 1) logits, any real values. Returns a scalar >= 0.
    """
    return F.softplus(-real_pred).mean() + F.softplus(fake_pred).mean()


def g_nonsaturating_loss(fake_pred: Tensor) -> Tensor:
    """Non-saturating generator loss: mean softplus(-D(G(z))). fake_pred: (N, 1) logits."""
    return F.softplus(-fake_pred).mean()


def r1_penalty(discriminator: Callable[[Tensor], Tensor], real: Tensor) -> Tensor:
    """R1 = mean over images of ||d sum(D(x)) / d x_i||^2, differentiable w.r.t. D's weights.

    real: (N, 3, S, S) float images in [-1, 1] (detached here; computed in float32, or float64
    for float64 input, with autocast off, because bf16 gradients of gradients are too coarse).
    Returns a scalar >= 0 with a graph to D's parameters (the caller scales by gamma / 2).
    """
    if real.ndim != 4:
        raise ValueError(f"r1_penalty: real must be (N, C, H, W), got shape {tuple(real.shape)}")
    x = real.detach()
    if x.dtype != torch.float64:
        x = x.float()
    x.requires_grad_(True)
    with torch.autocast(device_type=x.device.type, enabled=False):
        pred = discriminator(x)
        (grad,) = torch.autograd.grad(pred.sum(), x, create_graph=True)
    return grad.square().sum(dim=(1, 2, 3)).mean()


def ema_beta(batch_size: int, half_life_kimg: float) -> float:
    """EMA decay per step such that a weight's contribution halves every half_life_kimg * 1000
    images: beta = 0.5 ** (batch_size / (half_life_kimg * 1000))."""
    if batch_size < 1 or half_life_kimg <= 0:
        raise ValueError(f"ema_beta: need batch_size >= 1 and half_life_kimg > 0, got {batch_size}, {half_life_kimg}")
    return 0.5 ** (batch_size / (half_life_kimg * 1000.0))


@torch.no_grad()
def ema_update_(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """In place: ema.param = beta * ema.param + (1 - beta) * model.param; buffers copied.

    Both modules must have the same parameter names and shapes (ema = a copy of model).
    """
    ema_params = [p for _, p in ema.named_parameters()]
    params = [p.detach() for _, p in model.named_parameters()]
    if len(ema_params) != len(params):
        raise ValueError("ema_update_: the two modules have different parameter lists")
    torch._foreach_lerp_(ema_params, params, 1.0 - beta)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


# --------------------------------------------------------------------------------------------
# Data and samples
# --------------------------------------------------------------------------------------------


def load_training_images(data_path: str | Path, size: int, device: torch.device | str) -> Tensor:
    """All images of an HDF5 artifact's ``image`` dataset, as uint8 on ``device``.

    Returns (N, 3, size, size) uint8 RGB. Raises ArtifactError when the images are not uint8 RGB
    of the configured size.
    """
    from gan2shape.artifacts import read_artifact

    with read_artifact(data_path, require=("image",)) as art:
        shape = art.shape("image")
        if len(shape) != 4 or shape[1] != 3 or shape[2:] != (size, size):
            raise ArtifactError(
                f"{data_path}: dataset 'image' has shape {shape}, expected (N, 3, {size}, {size}); "
                f"set gan.size to the data's image size or rebuild the data"
            )
        if shape[0] < 1:
            raise ArtifactError(f"{data_path}: dataset 'image' is empty: rebuild the data with some images")
        images = art.array("image")
    if images.dtype != np.uint8:
        raise ArtifactError(
            f"{data_path}: dataset 'image' must be uint8 RGB, got {images.dtype}: rebuild the data "
            "(e.g. gan2shape make-heads or import-images)"
        )
    return torch.from_numpy(images).to(device)


def sample_grid(images: Tensor, cols: int = 8) -> np.ndarray:
    """Tile images into one picture.

    images: (N, 3, S, S) float in [-1, 1] (clipped). Returns (rows * S, cols * S, 3) uint8,
    rows = ceil(N / cols); empty cells are black.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"sample_grid: images must be (N, 3, S, S), got {tuple(images.shape)}")
    from gan2shape.imaging import tile_images

    n = images.shape[0]
    pix = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
    return tile_images(list(pix.permute(0, 2, 3, 1).numpy()), n_cols=max(1, min(cols, n)), fill=0)


# --------------------------------------------------------------------------------------------
# The trainer (state: networks, optimisers, RNG, counters)
# --------------------------------------------------------------------------------------------


def _synthesize(g: nn.Module, z: Tensor, cutoff: Tensor, noise: list[Tensor]) -> Tensor:
    """Images from two latent sets with per-image style mixing.

    z: (2, N, style_dim) normal. cutoff: (N,) int in [1, n_latent]; layers < cutoff take w of
    z[0], the rest w of z[1] (cutoff = n_latent: no mixing). noise: per-layer (N, 1, h, w).
    Returns (N, 3, S, S) images, roughly in [-1, 1].
    """
    two, n, dim = z.shape
    w = g.get_latent(z.reshape(two * n, dim)).reshape(two, n, 1, dim)  # float32 even under autocast
    layer = torch.arange(g.n_latent, device=z.device)
    first = (layer[None, :] < cutoff[:, None])[..., None]  # (N, n_latent, 1)
    ws = torch.where(first, w[0], w[1])
    image, _ = g([ws], input_is_latent=True, noise=noise)
    return image


def discriminate_pair(disc: Callable[[Tensor], Tensor], a: Tensor, b: Tensor, group: int) -> tuple[Tensor, Tensor]:
    """D logits of two batches from ONE discriminator call, with the same minibatch-stddev groups
    as two separate calls (so the result equals ``disc(a), disc(b)``; one call is faster).

    The discriminator groups rows r and r' when r = r' mod (N / group). Laying a and b out as
    (group, N/group) blocks side by side keeps every group inside one batch.
    a, b: (N, 3, S, S) with N a multiple of ``group`` (the discriminator's stddev_group).
    Returns (logits of a (N, 1), logits of b (N, 1)).
    """
    n = a.shape[0]
    if b.shape != a.shape or n % group or n < group:
        raise ValueError(
            f"discriminate_pair: need two batches of one shape with N a multiple of {group}, "
            f"got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    rest = a.shape[1:]
    x = torch.cat([a.reshape(group, n // group, *rest), b.reshape(group, n // group, *rest)], dim=1)
    pred = disc(x.reshape(2 * n, *rest)).reshape(group, 2, n // group, -1)
    return pred[:, 0].reshape(n, -1), pred[:, 1].reshape(n, -1)


def _arch_diff(stored: dict[str, Any], config: GanConfig, label: str) -> str:
    """'' when ``stored`` (a GanConfig or StyleGAN2Config as a dict) has config's ARCH_KEYS values,
    else "key: <label> a vs config b, ..." for each that differs."""
    return ", ".join(
        f"{k}: {label} {stored.get(k)!r} vs config {getattr(config, k)!r}"
        for k in ARCH_KEYS
        if stored.get(k) != getattr(config, k)
    )


def _copy_weights(pairs) -> None:
    """Copy each (destination, source) module pair's state entry by entry, in place: copy_ keeps the
    destination's memory formats (channels_last) and device."""
    with torch.no_grad():
        for mine, theirs in pairs:
            for dst, src in zip(mine.state_dict().values(), theirs.state_dict().values()):
                dst.copy_(src)


class GanTrainer:
    """One StyleGAN2 training state on in-memory images; :meth:`train_step` runs one iteration.

    data: (N, 3, S, S) uint8 RGB on ``device`` (S = config.size).
    The networks come from :func:`build_networks` (seeded), the RNG from ``config.seed``.
    Counters: ``step`` (iterations done; R1 runs when step % r1_every == 0) and ``images_seen``
    (real images shown to D). ``compile`` overrides config.compile when not None.
    Speed switches that leave the mathematics unchanged: ``fused_modconv`` (grouped per-sample
    weights, True, or one shared convolution on modulated activations, False),
    ``channels_last`` (memory format of both networks and the real images), ``pair_d`` (fake and
    real batches through D in one call, see :func:`discriminate_pair`) and ``compile_mode``
    (torch.compile's mode when compiling, e.g. "reduce-overhead" for CUDA graphs).
    """

    def __init__(
        self,
        config: GanConfig,
        data: Tensor,
        device: torch.device | str,
        *,
        compile: bool | None = None,
        fused_modconv: bool = False,
        channels_last: bool = False,
        pair_d: bool = True,
        compile_mode: str | None = None,
    ):
        self.config = config
        self.device = torch.device(device)
        if data.dtype != torch.uint8 or data.ndim != 4 or tuple(data.shape[1:]) != (3, config.size, config.size):
            raise ValueError(
                f"GanTrainer: data must be (N, 3, {config.size}, {config.size}) uint8, got "
                f"{tuple(data.shape)} {data.dtype}"
            )
        group = min(config.batch_size, 4)  # the discriminator's minibatch-stddev group
        if config.batch_size % group:
            raise ConfigError(
                "gan.batch_size", f"must be a multiple of 4 (minibatch stddev groups), got {config.batch_size}"
            )
        self.data = data.to(self.device)
        self.g, self.d, self.g_ema = build_networks(config, self.device)
        self.g.set_fused_modconv(fused_modconv)
        self.channels_last = channels_last
        if channels_last:
            from gan2shape.stylegan2.model import to_channels_last

            to_channels_last(self.g)
            to_channels_last(self.d)
        group = getattr(self.d, "stddev_group", 4)
        self._pair_group = group if pair_d and config.batch_size % group == 0 else 0
        self.compile_mode = compile_mode
        cuda = self.device.type == "cuda"
        self.g_optim = lazy_adam(self.g.parameters(), config.lr, 0, fused=cuda)
        self.d_optim = lazy_adam(
            self.d.parameters(), config.lr, config.r1_every if config.r1_gamma > 0 else 0, fused=cuda
        )
        self.rng = torch.Generator(device=self.device)
        self.rng.manual_seed(config.seed)
        self.step = 0
        self.images_seen = 0
        self.amp = cuda and config.amp == "bf16"
        self.beta = ema_beta(config.batch_size, config.ema_half_life_kimg)
        self._noise_shapes = [tuple(getattr(self.g.noises, f"noise_{i}").shape[2:]) for i in range(self.g.num_layers)]
        self._synth: Callable[..., Tensor] = lambda z, c, n: _synthesize(self.g, z, c, n)
        self._disc: Callable[[Tensor], Tensor] = self.d
        self.compiled = False
        self._cudagraphs = False
        if config.compile if compile is None else compile:
            self._try_compile()

    # ---- compile ------------------------------------------------------------------------

    def _try_compile(self) -> None:
        """Compile the G and D forwards; on any failure (no Triton, no compiler) stay eager."""
        eager_synth, eager_disc = self._synth, self._disc
        g = self.g
        # Static shapes: D sees 2N (paired) and N (G step) images; dynamic kernels would be slower.
        self._synth = torch.compile(lambda z, c, n: _synthesize(g, z, c, n), mode=self.compile_mode, dynamic=False)
        self._disc = torch.compile(self.d, mode=self.compile_mode, dynamic=False)
        self._cudagraphs = self.compile_mode in ("reduce-overhead", "max-autotune")
        try:  # probe the graphs (forward and backward) on zero batches; draws no training RNG
            b = self.config.batch_size
            z = torch.zeros(2, b, self.config.style_dim, device=self.device)
            cut = torch.full((b,), self.g.n_latent, device=self.device, dtype=torch.long)
            noise = [torch.zeros(b, 1, h, w, device=self.device) for h, w in self._noise_shapes]
            for _ in range(2):  # CUDA-graph modes record on the second call
                self._mark_step()
                with self._autocast():
                    fake = self._synth(z, cut, noise)
                    loss = self._disc(fake).float().sum()
                    if self._pair_group:
                        loss = loss + sum(
                            p.float().sum()
                            for p in discriminate_pair(self._disc, fake.detach(), fake.detach(), self._pair_group)
                        )
                loss.backward()
            self.compiled = True
        except Exception as exc:  # noqa: BLE001 - any compiler failure means: run eagerly
            log.warning("torch.compile failed (%s: %s); training runs eagerly", type(exc).__name__, exc)
            self._synth, self._disc = eager_synth, eager_disc
            self._cudagraphs = False
        finally:
            self.g.zero_grad(set_to_none=True)
            self.d.zero_grad(set_to_none=True)

    def _mark_step(self) -> None:
        """Tell CUDA-graph trees that a new iteration begins (outputs of the last may be reused)."""
        if self._cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()

    def _autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    # ---- sampling ----------------------------------------------------------------------

    def _reals(self, n: int) -> Tensor:
        """(n, 3, S, S) float32 in [-1, 1], drawn with replacement, optionally x-flipped."""
        idx = torch.randint(self.data.shape[0], (n,), generator=self.rng, device=self.device)
        x = self.data[idx].float().div_(127.5).sub_(1.0)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.config.flip:
            flip = torch.rand(n, generator=self.rng, device=self.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return x

    def _latents(self, n: int) -> tuple[Tensor, Tensor, list[Tensor]]:
        """z (2, n, style_dim), mixing cutoffs (n,) and per-layer noise for one G pass."""
        z = torch.randn(2, n, self.config.style_dim, generator=self.rng, device=self.device)
        n_latent = self.g.n_latent
        mix = torch.rand(n, generator=self.rng, device=self.device) < self.config.mixing_prob
        cut = torch.randint(1, n_latent, (n,), generator=self.rng, device=self.device)
        cut = torch.where(mix, cut, torch.full_like(cut, n_latent))
        noise = [torch.randn(n, 1, h, w, generator=self.rng, device=self.device) for h, w in self._noise_shapes]
        return z, cut, noise

    # ---- one iteration -----------------------------------------------------------------

    def train_step(self) -> dict[str, Tensor]:
        """One D step (+ R1 on schedule), one G step, one EMA update.

        Returns detached device scalars ``d_loss``, ``g_loss`` and, on R1 steps, ``r1``; no
        host synchronisation happens here.
        """
        cfg = self.config
        b = cfg.batch_size
        out: dict[str, Tensor] = {}
        self._mark_step()

        # Discriminator.
        self.d.requires_grad_(True)
        real = self._reals(b)
        z, cut, noise = self._latents(b)
        with torch.no_grad(), self._autocast():
            fake = self._synth(z, cut, noise)
        with self._autocast():
            if self._pair_group:
                fake_pred, real_pred = discriminate_pair(self._disc, fake, real, self._pair_group)
            else:
                fake_pred = self._disc(fake)
                real_pred = self._disc(real)
        d_loss = d_logistic_loss(real_pred.float(), fake_pred.float())
        self.d_optim.zero_grad(set_to_none=True)
        d_loss.backward()
        self.d_optim.step()
        out["d_loss"] = d_loss.detach()

        if cfg.r1_gamma > 0 and self.step % cfg.r1_every == 0:
            r1 = r1_penalty(self.d, real)  # eager and float32: double backward
            self.d_optim.zero_grad(set_to_none=True)
            (r1 * (cfg.r1_gamma / 2 * cfg.r1_every)).backward()
            self.d_optim.step()
            out["r1"] = r1.detach()

        # Generator (D frozen so that no D weight gradients are computed).
        self.d.requires_grad_(False)
        z, cut, noise = self._latents(b)
        with self._autocast():
            fake_pred = self._disc(self._synth(z, cut, noise))
        g_loss = g_nonsaturating_loss(fake_pred.float())
        self.g_optim.zero_grad(set_to_none=True)
        g_loss.backward()
        self.g_optim.step()
        out["g_loss"] = g_loss.detach()
        self.d.requires_grad_(True)

        ema_update_(self.g_ema, self.g, self.beta)
        self.step += 1
        self.images_seen += b
        return out

    # ---- checkpoints --------------------------------------------------------------------

    @torch.no_grad()
    def latent_avg(self, n: int = _LATENT_AVG_SAMPLES) -> Tensor:
        """Mean w of the EMA mapping over n latents from a fixed-seed RNG: (style_dim,)."""
        rng = torch.Generator(device=self.device)
        rng.manual_seed(self.config.seed + 1)
        z = torch.randn(n, self.config.style_dim, generator=rng, device=self.device)
        return self.g_ema.get_latent(z).mean(0)

    def training_state(self) -> dict[str, Any]:
        """Our resume state (stored under the checkpoint's extra entries)."""
        return {
            "format": _STATE_FORMAT,
            "config": dataclasses.asdict(self.config),
            "step": self.step,
            "images_seen": self.images_seen,
            "rng_state": self.rng.get_state().cpu(),
            "rng_device": self.device.type,
        }

    def save(self, path: str | Path, *, params_text: str | None = None) -> Path:
        """Write the resumable checkpoint (official layout + our state in ``extra``; atomic)."""
        from gan2shape.stylegan2.checkpoint import save_checkpoint

        extra: dict[str, Any] = {_STATE_KEY: self.training_state()}
        if params_text is not None:
            extra["params_text"] = params_text
        return save_checkpoint(
            path,
            self.g_ema,
            self.d,
            g=self.g,
            g_optim=self.g_optim,
            d_optim=self.d_optim,
            latent_avg=self.latent_avg(),
            extra=extra,
        )

    def load(self, path: str | Path) -> dict[str, Any]:
        """Restore networks, optimisers, RNG and counters from a checkpoint written by :meth:`save`.

        Raises CheckpointError when the file is not a resumable training checkpoint of this project
        or its architecture differs from the config. Returns the stored training state.
        """
        from gan2shape.stylegan2.checkpoint import load_checkpoint

        path = Path(path)
        try:
            loaded = load_checkpoint(path, device=self.device)
        except CheckpointError as exc:
            raise CheckpointError(f"cannot resume from {path}: {exc}") from None
        state = loaded.extra.get(_STATE_KEY)
        if (
            not isinstance(state, dict)
            or loaded.g is None
            or loaded.d is None
            or loaded.g_optim is None
            or loaded.d_optim is None
        ):
            raise CheckpointError(
                f"{path} is not a resumable gan2shape training checkpoint (no {_STATE_KEY!r} state or no "
                "g/d/g_optim/d_optim entries); move it away or use another out_dir"
            )
        stored = state["config"]
        diff = _arch_diff(stored, self.config, "checkpoint")
        if diff:
            raise CheckpointError(
                f"{path} holds a different architecture ({diff}); use another out_dir or delete the checkpoint"
            )
        benign = {"total_kimg", "checkpoint_every_kimg", "sample_every_kimg", "compile"}
        changed = [k for k, v in dataclasses.asdict(self.config).items() if k not in benign and stored.get(k) != v]
        if changed:
            log.warning("resuming %s with changed training settings: %s", path, ", ".join(changed))
        _copy_weights(((self.g, loaded.g), (self.g_ema, loaded.g_ema), (self.d, loaded.d)))
        self.g_optim.load_state_dict(loaded.g_optim)
        self.d_optim.load_state_dict(loaded.d_optim)
        # The config's optimiser settings win (they equal the stored ones unless changed on purpose).
        for optim, reg in ((self.g_optim, 0), (self.d_optim, self.config.r1_every if self.config.r1_gamma > 0 else 0)):
            ref = lazy_adam([torch.zeros(1)], self.config.lr, reg).param_groups[0]
            for group in optim.param_groups:
                group["lr"], group["betas"] = ref["lr"], ref["betas"]
        if state.get("rng_device") == self.device.type:
            self.rng.set_state(state["rng_state"].cpu())
        else:
            log.warning(
                "%s was written on %s; the RNG restarts from a derived seed on %s",
                path,
                state.get("rng_device"),
                self.device.type,
            )
            self.rng.manual_seed(self.config.seed + int(state["step"]))
        self.step = int(state["step"])
        self.images_seen = int(state["images_seen"])
        return state

    def warm_start(self, path: str | Path) -> int:
        """Start from the networks of a finished generator file (e.g. the shipped ``final.pt``):
        g and g_ema both take its g_ema, d its d; the optimisers and the RNG stay fresh (the file
        has no optimiser state). ``images_seen`` continues from the file's count (extra
        'images_seen' or our training state; 0 when it has none), so total_kimg keeps meaning
        "images seen in all". Raises CheckpointError when the file has no discriminator or another
        architecture. Returns the images_seen it continues from.
        """
        from gan2shape.stylegan2.checkpoint import load_checkpoint

        path = Path(path)
        try:
            loaded = load_checkpoint(path, device=self.device)
        except CheckpointError as exc:
            raise CheckpointError(f"cannot warm-start from {path}: {exc}") from None
        if loaded.d is None:
            raise CheckpointError(
                f"cannot warm-start from {path}: it has no discriminator ('d'); training needs one: "
                "give --init a file with one"
            )
        diff = _arch_diff(dataclasses.asdict(loaded.config), self.config, "file")
        if diff:
            raise CheckpointError(
                f"cannot warm-start from {path}: another architecture ({diff}); set gan.* to match it"
            )
        _copy_weights(((self.g, loaded.g_ema), (self.g_ema, loaded.g_ema), (self.d, loaded.d)))
        extra = loaded.extra or {}
        state = extra.get(_STATE_KEY, {})
        seen = extra.get("images_seen", state.get("images_seen", 0) if isinstance(state, dict) else 0)
        self.images_seen = int(seen)
        self.step = 0
        return self.images_seen

    @torch.no_grad()
    def samples(self, z: Tensor) -> Tensor:
        """EMA generator images for fixed z (N, style_dim), fixed noise: (N, 3, S, S) float32."""
        chunks = [self.g_ema([zc], randomize_noise=False)[0].float() for zc in z.split(32)]
        return torch.cat(chunks)


# --------------------------------------------------------------------------------------------
# The training run
# --------------------------------------------------------------------------------------------


# The stop request and the clean-up of half-written checkpoints are shared with the other training
# loops (gan2shape.peers): they live in progress.py and atomic.py.
_StopRequest = StopRequest
_remove_stray_temporaries = remove_stray_temporaries


def _next_multiple(value: int, every: int) -> int:
    return (value // every + 1) * every


def train_gan(
    config: GanConfig,
    data_path: str | Path,
    out_dir: str | Path,
    *,
    device: torch.device | str,
    max_kimg: float | None = None,
    progress: bool = True,
    params_text: str | None = None,
    log_every: int = 100,
    half_final: bool = False,
    init: str | Path | None = None,
) -> dict[str, Any]:
    """Train (or continue training) a StyleGAN2 on the ``image`` dataset of ``data_path``.

    data_path: HDF5 artifact with ``image`` (N, 3, size, size) uint8 RGB.
    out_dir receives: ``checkpoint.pt`` (resumable, atomic; every checkpoint_every_kimg, at the
    end of each run and on SIGTERM/SIGINT), ``samples_{kimg:06d}.png`` (8 x 8 grid from the EMA
    generator, fixed z and noise, every sample_every_kimg and at the end), ``log.jsonl`` (one
    line every ``log_every`` steps: losses, img/s) and, once total_kimg is reached, ``final.pt``
    (g_ema + d + latent_avg, float16 tensors if ``half_final``).
    If ``out_dir/checkpoint.pt`` exists, training continues from it (same architecture required).
    Otherwise, with ``init`` (a generator file with g_ema and d, such as a final.pt or the shipped
    generator), the networks start from that file with fresh optimisers and the image count
    continues from its own (:meth:`GanTrainer.warm_start`); later calls resume from checkpoint.pt.
    ``max_kimg`` caps the thousands of images trained in THIS call (for chunked runs); training
    never goes past total_kimg.
    On SIGTERM/SIGINT the checkpoint is written and SystemExit(128 + signal) is raised.
    Returns a summary dict: images_seen, kimg, steps, resumed_from_kimg, warm_start_from (the init file
    when this call warm-started, else None), finished, seconds,
    img_per_s, losses (last logged), and the paths written.
    """
    device = torch.device(device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True

    data = load_training_images(data_path, config.size, device)
    trainer = GanTrainer(
        config,
        data,
        device,
        channels_last=config.channels_last,
        compile_mode=config.compile_mode if config.compile else None,
    )
    ckpt_path = out_dir / "checkpoint.pt"
    final_path = out_dir / "final.pt"
    log_path = out_dir / "log.jsonl"
    resumed_from: float | None = None
    warm_from: str | None = None
    _remove_stray_temporaries(ckpt_path)
    _remove_stray_temporaries(final_path)
    if ckpt_path.exists():
        trainer.load(ckpt_path)
        resumed_from = trainer.images_seen / 1000
        log.info("resumed from %s at %.3f kimg (step %d)", ckpt_path, resumed_from, trainer.step)
        if init is not None:
            log.info("%s exists, so the warm start from %s is not used", ckpt_path, init)
    elif init is not None:
        seen = trainer.warm_start(init)
        warm_from = str(init)
        log.info(
            "warm start from %s (%.3f kimg seen; fresh optimisers): %d images of %dpx, %s",
            init,
            seen / 1000,
            data.shape[0],
            config.size,
            device,
        )
    else:
        log.info("training from scratch: %d images of %dpx, %s", data.shape[0], config.size, device)

    total = round(config.total_kimg * 1000)
    start_images = trainer.images_seen
    stop_at = total if max_kimg is None else min(total, start_images + round(max_kimg * 1000))
    ckpt_every = max(1, round(config.checkpoint_every_kimg * 1000))
    sample_every = max(1, round(config.sample_every_kimg * 1000))
    next_ckpt = _next_multiple(trainer.images_seen, ckpt_every)
    next_sample = _next_multiple(trainer.images_seen, sample_every)
    sample_rng = torch.Generator(device=device)
    sample_rng.manual_seed(config.seed + 2)
    sample_z = torch.randn(_N_SAMPLES, config.style_dim, generator=sample_rng, device=device)

    def write_samples() -> Path:
        path = out_dir / f"samples_{trainer.images_seen // 1000:06d}.png"
        write_png(path, sample_grid(trainer.samples(sample_z)))
        return path

    from gan2shape.progress import Progress

    bar = Progress(
        round(stop_at / 1000, 3),
        "train-gan",
        unit="kimg",
        bar=progress,
        initial=round(start_images / 1000, 3),
        dynamic_ncols=True,
    )
    sums: dict[str, Tensor] = {}
    counts: dict[str, int] = {}
    last_losses: dict[str, float] = {}
    t_run = time.perf_counter()
    t_log, images_log = t_run, trainer.images_seen
    wrote_sample: Path | None = None

    def flush_log() -> None:
        nonlocal t_log, images_log, sums, counts, last_losses
        if not counts:
            return
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        now = time.perf_counter()
        losses = {k: float(v) / counts[k] for k, v in sums.items()}
        speed = (trainer.images_seen - images_log) / max(now - t_log, 1e-9)
        record = {
            "kimg": trainer.images_seen / 1000,
            "step": trainer.step,
            **losses,
            "img_per_s": speed,
            "time_s": now - t_run,
        }
        with open(log_path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        bar.update(round((trainer.images_seen - images_log) / 1000, 3))
        bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()} | {"img/s": f"{speed:.0f}"})
        last_losses = losses
        t_log, images_log = now, trainer.images_seen
        sums, counts = {}, {}

    with _StopRequest() as stop:
        while trainer.images_seen < stop_at and stop.signum is None:
            out = trainer.train_step()
            for k, v in out.items():
                sums[k] = sums[k] + v if k in sums else v
                counts[k] = counts.get(k, 0) + 1
            if trainer.step % log_every == 0:
                flush_log()
            if trainer.images_seen >= next_sample:
                wrote_sample = write_samples()
                next_sample = _next_multiple(trainer.images_seen, sample_every)
            if trainer.images_seen >= next_ckpt:
                trainer.save(ckpt_path, params_text=params_text)
                next_ckpt = _next_multiple(trainer.images_seen, ckpt_every)
        flush_log()
        bar.close()
        trainer.save(ckpt_path, params_text=params_text)  # every run ends resumable
        seconds = time.perf_counter() - t_run
        finished = trainer.images_seen >= total
        if finished and (wrote_sample is None or wrote_sample.name != f"samples_{trainer.images_seen // 1000:06d}.png"):
            wrote_sample = write_samples()
        if finished:
            from gan2shape.stylegan2.checkpoint import save_checkpoint

            save_checkpoint(
                final_path,
                trainer.g_ema,
                trainer.d,
                latent_avg=trainer.latent_avg(),
                extra={_STATE_KEY: trainer.training_state()} | ({"params_text": params_text} if params_text else {}),
                half=half_final,
            )
            log.info("training finished at %.3f kimg: %s", trainer.images_seen / 1000, final_path)
        if stop.signum is not None:
            log.warning(
                "stopped by signal %d at %.3f kimg; checkpoint written to %s (rerun to continue)",
                stop.signum,
                trainer.images_seen / 1000,
                ckpt_path,
            )
            raise SystemExit(128 + stop.signum)

    ran = trainer.images_seen - start_images
    return {
        "images_seen": trainer.images_seen,
        "kimg": trainer.images_seen / 1000,
        "steps": trainer.step,
        "resumed_from_kimg": resumed_from,
        "warm_start_from": warm_from,
        "finished": finished,
        "seconds": seconds,
        "img_per_s": ran / seconds if seconds > 0 else 0.0,
        "losses": last_losses,
        "compiled": trainer.compiled,
        "checkpoint": str(ckpt_path),
        "final": str(final_path) if finished else None,
        "samples": str(wrote_sample) if wrote_sample else None,
        "log": str(log_path),
    }

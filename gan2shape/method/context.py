"""What the method's steps share: the context (config, camera, the frozen GAN, the perceptual loss),
the four networks and the encoder E (built, loaded from an artifact, stored in one), and the key
that says whether a stored step result still holds for the params (``method_key``, over the
fields the stage chain's description says the step reads: chain.py).

Modes (``method.mode``): ``instance`` gives every instance its own networks, stored as
``InstanceEnsemble``s whose N copies run as one vmapped call; ``joint`` one shared set.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from gan2shape.artifacts import Artifact
from gan2shape.config import ConfigError, MethodConfig, Params, RenderConfig
from gan2shape.errors import ArtifactError, CheckpointError
from gan2shape.method.chain import step_key
from gan2shape.method.encoder import load_encoder, resolve_encoder_init
from gan2shape.model.losses import PerceptualLoss, make_perceptual
from gan2shape.model.networks import (
    AlbedoNet,
    DepthNet,
    InstanceEnsemble,
    InversionEncoder,
    LightNet,
    ViewNet,
)
from gan2shape.render import Camera
from gan2shape.stylegan2.checkpoint import load_checkpoint
from gan2shape.stylegan2.model import Discriminator, Generator

__all__ = [
    "NET_NAMES",
    "STEP_SALT",
    "STORE_DTYPE",
    "Context",
    "make_context",
    "build_nets",
    "load_nets",
    "nets_from_joint",
    "init_seeds",
    "pretrained_path",
    "pretrained_encoder",
    "net_states",
    "method_key",
]

log = logging.getLogger(__name__)

NET_NAMES = ("depth", "albedo", "view", "light")
# Offsets added to the seed so that each step of each stage draws its own random stream.
STEP_SALT = {"init": 11, "prior": 13, "step1": 17, "pseudo": 19, "invert": 23, "encoder": 29, "step3": 31}


@dataclass
class Context:
    """Everything the steps share: the config, camera, the frozen GAN and the perceptual loss.

    config: the ``method`` params; params_text: the effective params YAML (provenance);
    camera: the renderer's camera at config.image_size; generator / discriminator: the frozen GAN
    (eval, no grad) on ``device``; perceptual: the step 1/3 perceptual loss (its source is logged);
    nf: base channels of the four networks (None = the reference's max(4096 // S, 16)); enc_nf:
    base channels of E (reference 32); progress: show tqdm bars.
    """

    config: MethodConfig
    params_text: str | None
    camera: Camera
    generator: Generator
    discriminator: Discriminator
    perceptual: PerceptualLoss
    device: torch.device
    nf: int | None = None
    enc_nf: int = 32
    progress: bool = True

    @property
    def size(self) -> int:
        return self.config.image_size

    @property
    def feature_blocks(self) -> int:
        """Discriminator blocks for step 2's feature matching: perceptual_blocks, kept below the
        last block (its minibatch-stddev mixes images of different instances)."""
        return max(1, min(self.config.perceptual_blocks, self.discriminator.n_blocks - 1))


def make_context(
    params: Params,
    params_text: str | None,
    device: torch.device | str = "cpu",
    progress: bool = True,
    nf: int | None = None,
    enc_nf: int = 32,
) -> Context:
    """Load the GAN of ``params.method.checkpoint`` on ``device`` and build the shared context."""
    cfg = params.method
    device = torch.device(device)
    ckpt = load_checkpoint(cfg.checkpoint, device=device)
    if ckpt.d is None:
        raise CheckpointError(f"{cfg.checkpoint} has no discriminator ('d'); GAN2Shape needs it for step 2")
    g, d = ckpt.g_ema.eval().requires_grad_(False), ckpt.d.eval().requires_grad_(False)
    r = params.render
    camera = Camera(
        cfg.image_size,
        fov_deg=r.fov_deg,
        min_depth=r.min_depth,
        max_depth=r.max_depth,
        rot_center_depth=r.rot_center_depth,
    )
    perceptual = make_perceptual(cfg.perceptual, discriminator=d, n_blocks=cfg.perceptual_blocks)
    log.info(
        "method: perceptual loss source %r (%d blocks), mode %s, profile %s",
        cfg.perceptual,
        cfg.perceptual_blocks,
        cfg.mode,
        cfg.profile,
    )
    return Context(cfg, params_text, camera, g, d, perceptual, device, nf=nf, enc_nf=enc_nf, progress=progress)


# ----- networks ---------------------------------------------------------------------------------


def _factories(ctx: Context) -> dict[str, Callable[[], nn.Module]]:
    s, nf = ctx.size, ctx.nf
    return {
        "depth": lambda: DepthNet(s, nf=nf),
        "albedo": lambda: AlbedoNet(s, nf=nf),
        "view": lambda: ViewNet(s, nf=nf),
        "light": lambda: LightNet(s, nf=nf),
        "encoder": lambda: InversionEncoder(s, out_dim=ctx.generator.style_dim, nf=ctx.enc_nf),
    }


def _build(ctx: Context, name: str, n: int, seed: int, mode: str | None = None) -> nn.Module:
    """One network (joint mode) or an InstanceEnsemble of n copies (instance mode; ``mode`` None =
    the config's), initialised from a CPU RNG seeded with ``seed`` (the caller's RNG untouched),
    moved to ctx.device."""
    factory = _factories(ctx)[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = InstanceEnsemble(factory, n) if (mode or ctx.config.mode) == "instance" else factory()
    return net.to(ctx.device)


def nets_from_joint(ctx: Context, art: Artifact, n: int, names: tuple[str, ...] = NET_NAMES) -> dict[str, nn.Module]:
    """Networks initialised from an open joint-mode artifact's shared weights (the reference's
    ``reset_weight``: every instance starts from the joint pre-trained networks): in instance mode
    each of the n copies is a copy of the shared network; in joint mode the shared network itself."""
    if art.attrs.get("mode") != "joint":
        raise ArtifactError(
            f"{art.path} was made in mode {art.attrs.get('mode')!r}; initial weights must come from a "
            "joint-mode run (method.mode=joint)"
        )
    nets = {}
    for name in names:
        shared = _build(ctx, name, 1, 0, mode="joint")
        try:
            shared.load_state_dict({k: v.to(ctx.device) for k, v in _stored(ctx, art, name, 1, "joint").items()})
        except RuntimeError as exc:
            raise ArtifactError(
                f"{art.path}: network {name!r} does not fit this configuration ({exc}); give "
                "--init a joint run of the same image size and network widths"
            ) from None
        if ctx.config.mode == "instance":
            shared = InstanceEnsemble.replicate(shared, n).to(ctx.device)
        nets[name] = shared
    return nets


def build_nets(ctx: Context, n: int, names: tuple[str, ...] = NET_NAMES, salt: int = 0) -> dict[str, nn.Module]:
    """Freshly initialised networks ``names`` for a shard of n instances (seeded by config.seed)."""
    return {name: _build(ctx, name, n, seed) for name, seed in init_seeds(ctx, names, salt).items()}


def init_seeds(ctx: Context, names: tuple[str, ...], salt: int = 0) -> dict[str, int]:
    """The seed each fresh network of ``names`` is initialised from (``build_nets``)."""
    base = ctx.config.seed * 1000 + STEP_SALT["init"] + salt
    return {name: base + 7 * i for i, name in enumerate(names)}


def _stored(ctx: Context, art: Artifact, name: str, n: int, mode: str | None = None) -> dict[str, torch.Tensor]:
    """The state dict of network ``name`` of an artifact: stored or linked (``Artifact.network``) or, when
    the artifact lists it under attrs 'fresh_networks' (name -> seed: an untrained, seeded network,
    not stored), rebuilt from its seed."""
    fresh = art.attrs.get("fresh_networks") or {}
    if name in fresh and name not in art.network_names and name not in art.linked_network_names:
        return _build(ctx, name, n, int(fresh[name]), mode=mode).state_dict()
    return art.network(name)


def load_nets(ctx: Context, art: Artifact, n: int, names: tuple[str, ...] = NET_NAMES) -> dict[str, nn.Module]:
    """The networks stored in an artifact (built with the same mode and sizes, then loaded)."""
    if art.attrs.get("mode") != ctx.config.mode:
        raise ArtifactError(
            f"{art.path} was made in mode {art.attrs.get('mode')!r}, the params say "
            f"{ctx.config.mode!r}: rerun from the prior or fix method.mode"
        )
    nets = {}
    for name in names:
        net = _build(ctx, name, n, 0)
        try:
            net.load_state_dict({k: v.to(ctx.device) for k, v in _stored(ctx, art, name, n).items()})
        except RuntimeError as exc:
            raise ArtifactError(
                f"{art.path}: network {name!r} does not fit this configuration ({exc}); "
                "were the image size or network widths changed?"
            ) from None
        nets[name] = net
    return nets


def pretrained_path(ctx: Context) -> Path | None:
    """The pre-trained E a fresh E starts from (method.encoder_init, resolved: resolve_encoder_init), or None."""
    return resolve_encoder_init(ctx.config, image_size=ctx.size, enc_nf=ctx.enc_nf, style_dim=ctx.generator.style_dim)


def pretrained_encoder(ctx: Context, n: int) -> nn.Module:
    """E from method.encoder_init (a 'pretrain-encoder' artifact): one shared copy in joint mode, n copies
    (one per instance) in instance mode; a file made for other settings is refused by name."""
    cfg = ctx.config
    try:
        return load_encoder(
            pretrained_path(ctx),
            image_size=ctx.size,
            enc_nf=ctx.enc_nf,
            style_dim=ctx.generator.style_dim,
            offset=cfg.offset,
            f1_d=cfg.f1_d,
            n=n if cfg.mode == "instance" else None,
            device=ctx.device,
        )
    except ArtifactError as exc:
        raise ConfigError("method.encoder_init", str(exc)) from None


# Artifacts store network weights and the pseudo/projected sample images in float16: per-instance
# networks make a 20-instance 64 px artifact ~3 GB in float32, and a benchmark runs several shards
# side by side on one disk. Every step reads what the previous one wrote (also in an uninterrupted
# run), so resumed and uninterrupted runs stay identical; weights are rounded to ~1e-3 relative between
# steps, images (in [-1, 1]) to <= 5e-4. Results (depth, view, light, renders) stay float32.
STORE_DTYPE = torch.float16


def net_states(nets: dict[str, nn.Module]) -> dict[str, dict[str, torch.Tensor]]:
    """State dicts on the CPU for an artifact, floating tensors in STORE_DTYPE."""
    return {
        name: {
            k: (v.detach().to("cpu", STORE_DTYPE) if v.is_floating_point() else v.detach().cpu())
            for k, v in net.state_dict().items()
        }
        for name, net in nets.items()
    }


# ----- the key of a step's result -------------------------------------------------------------


def method_key(ctx: Context, step: str) -> str:
    """The rerun key of ``step``'s result under this context (``chain.step_key``: a digest of only the
    params fields that step reads), with the context's network widths and camera. Stored in every
    artifact ('method_key'); the stage loop rebuilds an artifact whose key differs."""
    method = dataclasses.replace(ctx.config, nf=ctx.nf, enc_nf=ctx.enc_nf)
    render = RenderConfig(**{f.name: getattr(ctx.camera, f.name) for f in dataclasses.fields(RenderConfig)})
    return step_key(step, method, render)

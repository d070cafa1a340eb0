"""An inversion encoder E that has learned to invert before step 2 asks it to (``pretrain-encoder``).

Step 2 trains E so that ``G(w_target + offset(E(pseudo) - E(target)))`` redraws each pseudo-sample.
Started fresh, E has to learn what a turned head looks like in latent space from one instance's few
hundred renders; the reference starts every instance from an E pre-trained over ~800k step-2 samples
of joint pre-training. Here E is pre-trained on the GAN itself, where the answer is known: pairs of
GAN images ``G(w1)``, ``G(w2)`` sharing their noise, with

    w1 = mapping(z1),   w2 = w1 + a * (mapping(z2) - w1),   a ~ U(mix_range)

and E learns the offset ``w2 - w1`` through the very map step 2 uses (``latents.OffsetMap``, relative
encoding): the loss is ``lam_latent * mean(((offset - (w2 - w1)) / spread)^2)`` (the offset's error in
units of the GAN's own w spread per dimension) plus ``lam_image`` times step 2's image loss of
``G(w1 + offset)`` against ``G(w2)`` (L1 + discriminator feature matching).

The result is an 'encoder' artifact (network 'encoder' in float16; attrs image_size, enc_nf,
style_dim, offset, f1_d, checkpoint, report) that ``method.encoder_init`` names: every run whose E
would start fresh starts from it (each instance from its own copy).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from gan2shape.artifacts import read_artifact, write_artifact
from gan2shape.config import MethodConfig, PretrainEncoderConfig
from gan2shape.errors import ArtifactError
from gan2shape.method.instances import resize_images
from gan2shape.method.latents import make_offset_map, w_spread
from gan2shape.model.losses import feature_matching, masked_l1
from gan2shape.model.networks import InstanceEnsemble, InversionEncoder
from gan2shape.stylegan2.model import Discriminator, Generator

__all__ = ["ENCODER_KIND", "GanPairs", "pretrain_encoder", "save_encoder", "load_encoder", "resolve_encoder_init"]

log = logging.getLogger(__name__)

ENCODER_KIND = "encoder"


class GanPairs:
    """Pairs of GAN images with a known latent offset (module docstring), drawn from a CPU RNG.

    generator: the frozen GAN; image_size: the size E works at (images are resized to it);
    mix_range: the range of a.
    """

    def __init__(self, generator: Generator, image_size: int, mix_range: tuple[float, float]) -> None:
        self.g, self.size, self.mix_range = generator, image_size, mix_range
        self.device = generator.input.input.device

    @torch.no_grad()
    def draw(self, n: int, rng: torch.Generator) -> dict[str, torch.Tensor]:
        """n pairs: w1, w2 (n, D) float32; noise (num_layers maps (n, 1, r, r)); image1, image2
        (n, 3, S, S) in [-1, 1] at E's size S."""
        d = self.g.style_dim
        z = torch.randn(2 * n, d, generator=rng).to(self.device)
        lo, hi = self.mix_range
        a = (lo + (hi - lo) * torch.rand(n, 1, generator=rng)).to(self.device)
        w = self.g.get_latent(z)
        w1 = w[:n]
        w2 = w1 + a * (w[n:] - w1)
        shapes = [tuple(x.shape[1:]) for x in self.g.make_noise()]
        noise = [torch.randn(n, *s, generator=rng).to(self.device) for s in shapes]
        images = self.synth(torch.cat([w1, w2]), [torch.cat([x, x]) for x in noise])
        return {
            "w1": w1,
            "w2": w2,
            "noise": noise,
            "image1": resize_images(images[:n], self.size),
            "image2": resize_images(images[n:], self.size),
        }

    def synth(self, w: torch.Tensor, noise: list[torch.Tensor]) -> torch.Tensor:
        """w (n, D) -> G's images (n, 3, R, R) in [-1, 1] with the given noise (differentiable in w)."""
        latent = w[:, None, :].expand(-1, self.g.n_latent, -1)
        return self.g.synthesis(latent, noise=noise, randomize_noise=False).clamp(-1.0, 1.0)


def pretrain_encoder(
    generator: Generator,
    discriminator: Discriminator,
    config: PretrainEncoderConfig,
    *,
    image_size: int,
    enc_nf: int = 32,
    offset: str = "linear",
    f1_d: int = 8,
    feature_blocks: int = 3,
    progress: bool = True,
) -> tuple[InversionEncoder, dict]:
    """Pre-train E on GAN pairs (module docstring) on the generator's device.

    generator, discriminator: the frozen GAN (eval, no grad); image_size, enc_nf: E's size and width
    (method.image_size, method.enc_nf); offset, f1_d: the latent offset E is trained for
    (method.offset, method.f1_d); feature_blocks: discriminator blocks of the image loss.
    Returns E (eval) and a report: the held-out offset error relative to the true offset
    (``rel_latent_error`` = mean squared error / mean squared true offset, in spread units; 1 = no
    better than predicting no offset), its image L1, the loss history (every 1 %), seconds.
    """
    t0 = time.perf_counter()
    device = generator.input.input.device
    offset_map = make_offset_map(generator, offset, f1_d)
    spread = w_spread(generator)[1]
    blocks = max(1, min(feature_blocks, discriminator.n_blocks - 1))
    pairs = GanPairs(generator, image_size, config.mix_range)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        encoder = InversionEncoder(image_size, out_dim=generator.style_dim, nf=enc_nf).to(device)
    opt = torch.optim.Adam(encoder.parameters(), lr=config.lr, betas=(0.9, 0.999))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.steps)
    rng = torch.Generator().manual_seed(config.seed + 1)
    held = pairs.draw(config.held_out, torch.Generator().manual_seed(config.seed + 2))

    def features(img: torch.Tensor) -> list[torch.Tensor]:
        return discriminator.features(resize_images(img, discriminator.size), blocks)

    def losses(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        e = encoder(batch["image2"]) - encoder(batch["image1"])
        off = offset_map(e)
        latent = (((off - (batch["w2"] - batch["w1"])) / spread) ** 2).mean(1)
        image = torch.zeros_like(latent)
        if config.lam_image > 0:
            out = resize_images(pairs.synth(batch["w1"] + off, batch["noise"]), image_size)
            with torch.no_grad():
                target_feats = features(batch["image2"])
            image = masked_l1(out, batch["image2"]) + feature_matching(features(out), target_feats)
        return config.lam_latent * latent + config.lam_image * image, latent, image

    history: list[float] = []
    every = max(1, config.steps // 100)
    encoder.train()
    for step in tqdm(range(config.steps), desc="pretrain E", disable=not progress):
        loss, _, _ = losses(pairs.draw(config.batch_size, rng))
        opt.zero_grad(set_to_none=True)
        loss.mean().backward()
        opt.step()
        sched.step()
        if step % every == 0 or step == config.steps - 1:
            history.append(round(float(loss.detach().mean()), 5))
    encoder.eval()
    with torch.no_grad():
        true = ((held["w2"] - held["w1"]) / spread).pow(2).mean()
        _, latent, image = losses(held)
        zero_image = masked_l1(held["image1"], held["image2"]).mean()
    report = {
        "rel_latent_error": round(float(latent.mean() / true), 4),
        "held_out_image_l1": round(float((image if config.lam_image > 0 else latent * float("nan")).mean()), 4),
        "held_out_l1_no_offset": round(float(zero_image), 4),
        "loss_history": history,
        "steps": config.steps,
        "batch_size": config.batch_size,
        "offset": offset,
        "f1_d": f1_d,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    log.info(
        "pretrain E: held-out offset error %.3f of the true offsets, %.1f s",
        report["rel_latent_error"],
        report["seconds"],
    )
    return encoder, report


def save_encoder(
    path: str | Path,
    encoder: InversionEncoder,
    *,
    offset: str,
    f1_d: int,
    checkpoint: str,
    report: dict,
    params_text: str | None = None,
) -> Path:
    """Write an 'encoder' artifact: network 'encoder' (float16 weights), attrs image_size, enc_nf,
    style_dim, offset, f1_d, checkpoint (the GAN it inverts into), report."""
    state = {
        k: v.detach().to("cpu", torch.float16) if v.is_floating_point() else v.detach().cpu()
        for k, v in encoder.state_dict().items()
    }
    nf = encoder.network[0].out_channels
    attrs = {
        "image_size": encoder.image_size,
        "enc_nf": nf,
        "style_dim": encoder.out_dim,
        "offset": offset,
        "f1_d": f1_d,
        "checkpoint": str(checkpoint),
        "report": report,
    }
    return write_artifact(
        path, ENCODER_KIND, {}, ids=[], params_text=params_text, networks={"encoder": state}, attrs=attrs
    )


_HINTS = {
    "image_size": "method.image_size",
    "enc_nf": "method.enc_nf",
    "offset": "method.offset",
    "f1_d": "method.f1_d",
    "style_dim": "method.checkpoint (another GAN)",
}


def _mismatch(attrs: dict, *, image_size: int, enc_nf: int, style_dim: int, offset: str, f1_d: int) -> str | None:
    """None when an encoder artifact's attrs fit the run's settings, else 'key=theirs, this run uses ours (setting)'."""
    wanted = {"image_size": image_size, "enc_nf": enc_nf, "style_dim": style_dim, "offset": offset}
    if offset == "mapping":
        wanted["f1_d"] = f1_d
    for key, value in wanted.items():
        if attrs.get(key) != value:
            return f"{key}={attrs.get(key)!r}, this run uses {value!r} ({_HINTS[key]})"
    return None


_said: set[str] = set()


def resolve_encoder_init(config: MethodConfig, *, image_size: int, enc_nf: int, style_dim: int) -> Path | None:
    """The pre-trained E a run starts from (``config.encoder_path``), or None for a fresh one.

    An explicit path is returned as it is (load_encoder refuses a file that does not fit). For
    encoder_init 'auto' the file beside the checkpoint is used when it exists and fits the run
    (image_size, enc_nf, the GAN's style_dim, offset); otherwise E starts fresh and the log says why
    and how to make one, once per process.
    """
    path = config.encoder_path
    if path is None:
        return None
    if config.encoder_init != "auto":
        return Path(path)
    why = None
    if not Path(path).is_file():
        why = f"there is none at {path}"
    else:
        with read_artifact(path, ENCODER_KIND) as art:
            problem = _mismatch(
                dict(art.attrs),
                image_size=image_size,
                enc_nf=enc_nf,
                style_dim=style_dim,
                offset=config.offset,
                f1_d=config.f1_d,
            )
        if problem is None:
            return Path(path)
        why = f"{path} was made for {problem}"
    if why not in _said:
        _said.add(why)
        log.info(
            "method.encoder_init=auto: E starts fresh, as %s (make one with gan2shape pretrain-encoder "
            "--out %s, or set method.encoder_init=null to silence this)",
            why,
            path,
        )
    return None


def load_encoder(
    path: str | Path,
    *,
    image_size: int,
    enc_nf: int,
    style_dim: int,
    offset: str,
    f1_d: int,
    n: int | None = None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """A pre-trained E from an 'encoder' artifact, checked against the run's settings.

    image_size, enc_nf, style_dim, offset, f1_d: what the run uses (method.image_size, enc_nf, the
    GAN's style_dim, method.offset, f1_d); a mismatch raises ArtifactError naming the setting.
    n: None for one shared E (joint mode), else an InstanceEnsemble of n copies of it.
    Returns the network in float32 on ``device`` (train mode, as a fresh one).
    """
    with read_artifact(path, ENCODER_KIND) as art:
        attrs = dict(art.attrs)
        state = {k: v.float() if v.is_floating_point() else v for k, v in art.network("encoder").items()}
    problem = _mismatch(attrs, image_size=image_size, enc_nf=enc_nf, style_dim=style_dim, offset=offset, f1_d=f1_d)
    if problem is not None:
        raise ArtifactError(
            f"{path} holds an encoder made for {problem}: pre-train one for these settings "
            "(gan2shape pretrain-encoder) or fix it"
        )
    with torch.random.fork_rng(devices=[]):
        net = InversionEncoder(image_size, out_dim=style_dim, nf=enc_nf)
    net.load_state_dict(state)
    if n is not None:
        net = InstanceEnsemble.replicate(net, n)
    return net.to(device)

"""The shipped default generator (data/stylegan2_heads64.pt) loads and behaves like a trained GAN."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from gan2shape.stylegan2.checkpoint import load_checkpoint

SHIPPED = Path(__file__).resolve().parents[1] / "data" / "stylegan2_heads64.pt"


@pytest.fixture(scope="module")
def shipped():
    if not SHIPPED.exists():
        pytest.fail(f"{SHIPPED} is missing: it is part of the repository (the embedded default generator)")
    return load_checkpoint(SHIPPED)


def test_architecture_and_size(shipped):
    cfg = shipped.config
    assert (cfg.size, cfg.style_dim, cfg.n_mlp) == (64, 512, 8)
    assert shipped.d is not None and shipped.latent_avg is not None
    assert SHIPPED.stat().st_size < 30 * 2**20


def test_samples_are_images_not_noise(shipped):
    g = shipped.g_ema.eval()
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(8, g.style_dim, generator=gen)
    with torch.no_grad():
        img, _ = g([z], randomize_noise=False)
    assert img.shape == (8, 3, 64, 64) and torch.isfinite(img).all()
    # a trained generator's outputs stay close to the data range and differ between latents
    assert img.abs().quantile(0.99) < 1.5
    assert (img[0] - img[1]).abs().mean() > 0.05
    # natural images are smooth: neighbouring pixels differ far less than pixels far apart
    local = (img[..., 1:] - img[..., :-1]).abs().mean()
    far = (img[..., 32:] - img[..., :32]).abs().mean()
    assert local < 0.5 * far


def test_discriminator_prefers_generated_heads_over_noise(shipped):
    g, d = shipped.g_ema.eval(), shipped.d.eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        fake, _ = g([torch.randn(8, g.style_dim, generator=gen)], randomize_noise=False)
        noise = torch.rand(8, 3, 64, 64, generator=gen) * 2 - 1
        assert d(fake).mean() > d(noise).mean()


def test_the_shipped_encoder_fits_the_default_run_and_has_learnt_to_invert(shipped):
    """data/stylegan2_heads64.encoder_linear.h5 (pretrain-encoder) is what params.yaml's encoder_init
    'auto' starts step 2 from, and its recorded held-out error says it learnt the GAN's offsets."""
    from gan2shape.config import load_params
    from gan2shape.method.encoder import load_encoder, resolve_encoder_init

    params, _ = load_params(SHIPPED.parents[1] / "params.yaml")
    cfg = dataclasses.replace(params.method, checkpoint=str(SHIPPED))  # wherever the tests run from
    found = resolve_encoder_init(cfg, image_size=cfg.image_size, enc_nf=cfg.enc_nf, style_dim=shipped.config.style_dim)
    assert found == SHIPPED.with_name("stylegan2_heads64.encoder_linear.h5")
    assert found.stat().st_size < 16 * 2**20
    enc = load_encoder(
        found,
        image_size=cfg.image_size,
        enc_nf=cfg.enc_nf,
        style_dim=shipped.config.style_dim,
        offset=cfg.offset,
        f1_d=cfg.f1_d,
    )
    with torch.no_grad():
        out = enc(torch.zeros(2, 3, cfg.image_size, cfg.image_size))
    assert out.shape == (2, 512) and torch.isfinite(out).all()
    from gan2shape.artifacts import read_artifact

    with read_artifact(found, "encoder") as art:
        report = art.attrs["report"]
    assert report["rel_latent_error"] < 0.8 and report["held_out_image_l1"] < report["held_out_l1_no_offset"]

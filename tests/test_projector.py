"""GAN inversion: schedule, noise regulariser, feature distance, PSNR, and round trips (tiny CPU models)."""

from __future__ import annotations

import pytest
import torch

from gan2shape.artifacts import read_artifact, write_artifact
from gan2shape.config import GanConfig, ProjectConfig
from gan2shape.stylegan2.projector import (
    feature_distance,
    latent_penalties,
    lr_schedule,
    mean_latent_stats,
    noise_regularize,
    normalize_noise_,
    project_file,
    project_images,
    psnr,
    to_uint8,
    w_whitening,
)
from gan2shape.stylegan2.train import build_networks

TINY = GanConfig(size=32, style_dim=32, n_mlp=2, channel_multiplier=1, channel_max=32, seed=5)


@pytest.fixture(scope="module")
def tiny_gan():
    g, d, _ = build_networks(TINY)
    return g.eval(), d.eval()


def synthesize_targets(g, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images drawn by g from known w with its fixed noise buffers: (w (n, D), images in [-1, 1])."""
    rng = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = g.get_latent(torch.randn(n, TINY.style_dim, generator=rng))
        images, _ = g([w], input_is_latent=True, randomize_noise=False)
    return w, images.clamp(-1, 1)


# --------------------------------------------------------------------------------------------
# Pure pieces
# --------------------------------------------------------------------------------------------


def test_psnr_analytic():
    a = torch.zeros(2, 3, 4, 4)
    b = torch.full((2, 3, 4, 4), 0.2)  # 0.1 apart in [0, 1] -> MSE 0.01 -> 20 dB
    torch.testing.assert_close(psnr(a, b), torch.full((2,), 20.0))
    assert torch.isinf(psnr(a, a)).all()
    with pytest.raises(ValueError, match="one shape"):
        psnr(a, b[:1])


def test_to_uint8_maps_range():
    x = torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    assert to_uint8(x)[0, 0, 0].tolist() == [0, 0, 128, 255, 255]


def test_lr_schedule_ramps():
    assert lr_schedule(0.0, 0.1) == 0.0
    assert lr_schedule(0.025, 0.1) == pytest.approx(0.05)  # half-way up the 5 % ramp
    assert lr_schedule(0.5, 0.1) == pytest.approx(0.1)
    assert lr_schedule(0.875, 0.1) == pytest.approx(0.05)  # half-way down the cosine (last 25 %)
    assert lr_schedule(1.0, 0.1) == pytest.approx(0.0)


def test_noise_regularize_analytic():
    # Checkerboard: lag-1 products are all -1 -> 1 + 1 at 16x16; its 2x2 means are 0 at 8x8.
    i, j = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    checker = ((i + j) % 2 * 2 - 1).float().view(1, 1, 16, 16)
    # A constant map c: every scale contributes 2 c^4 (16x16 and 8x8 -> 4 c^4).
    const = torch.full((1, 1, 16, 16), 0.5)
    value = noise_regularize([torch.cat([checker, const])])
    torch.testing.assert_close(value, torch.tensor([2.0, 4 * 0.5**4]))
    # Images are independent: the first image's value does not depend on the second.
    other = noise_regularize([torch.cat([checker, torch.randn(1, 1, 16, 16)])])
    assert other[0] == value[0]
    # White noise has almost no autocorrelation.
    assert noise_regularize([torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(0))]) < 1e-2


def test_normalize_noise_per_image():
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    x = x * torch.tensor([1.0, 5.0, 0.1]).view(3, 1, 1, 1) + 2.0
    y = x[0].clone()
    normalize_noise_([x])
    torch.testing.assert_close(x.mean(dim=(1, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std(dim=(1, 2, 3)), torch.ones(3))
    torch.testing.assert_close(x[0], (y - y.mean()) / y.std())


def test_feature_distance_invariants():
    a = [torch.randn(2, 5, 4, 4), torch.randn(2, 7, 2, 2)]
    torch.testing.assert_close(feature_distance(a, a), torch.zeros(2))
    torch.testing.assert_close(feature_distance(a, [3.0 * f for f in a]), torch.zeros(2), atol=1e-6, rtol=0)
    # Opposite unit vectors are 2 apart: 4 per map.
    torch.testing.assert_close(feature_distance(a, [-f for f in a]), torch.full((2,), 8.0))


def test_mean_latent_stats_matches_direct_mean(tiny_gan):
    g, _ = tiny_gan
    mean, std = mean_latent_stats(g, 5000, seed=1, device="cpu")
    rng = torch.Generator().manual_seed(1)
    with torch.no_grad():
        w = g.get_latent(torch.randn(4096, TINY.style_dim, generator=rng))
        w = torch.cat([w, g.get_latent(torch.randn(904, TINY.style_dim, generator=rng))])
    torch.testing.assert_close(mean, w.mean(0))
    assert std == pytest.approx(float((w - w.mean(0)).square().sum(1).mean().sqrt()), rel=1e-5)


def test_whitened_latent_penalties(tiny_gan):
    g, _ = tiny_gan
    mean, white = w_whitening(g, 20000, seed=2, device="cpu")
    with torch.no_grad():
        w = g.get_latent(torch.randn(20000, TINY.style_dim, generator=torch.Generator().manual_seed(3)))
    x = (w - mean) @ white
    # whitening: an independent draw has about identity covariance, so the prior is ~1 per sample
    cov = x.T @ x / x.shape[0]
    assert (cov.diagonal() - 1).abs().max() < 0.1 and (cov - torch.diag(cov.diagonal())).abs().max() < 0.1
    prior, tie = latent_penalties(w, mean, white)
    assert prior.mean() == pytest.approx(1.0, abs=0.05) and torch.equal(tie, torch.zeros_like(tie))
    # the mean w costs nothing; one w repeated over layers has no tie cost; a w+ of independent layers does
    prior0, _ = latent_penalties(mean[None], mean, white)
    assert float(prior0) < 1e-8
    plus = w[:6].reshape(2, 3, -1)
    p_plus, t_plus = latent_penalties(plus, mean, white)
    torch.testing.assert_close(p_plus, prior[:6].reshape(2, 3).mean(1))
    assert (t_plus > 0.3).all()
    _, t_rep = latent_penalties(w[:2, None].expand(-1, 3, -1), mean, white)
    assert t_rep.abs().max() < 1e-10


def test_projection_prior_and_tie_pull_the_latent_in(tiny_gan):
    g, d = tiny_gan
    _, target = synthesize_targets(g, 2, seed=13)
    base = dict(steps=40, batch_size=2, feature_blocks=2, mean_latent_samples=1000, seed=0, latent_prior=0.0)
    mean, white = w_whitening(g, 1000, seed=0, device="cpu")
    free = project_images(g, d, target, ProjectConfig(**base, w_plus=True), device="cpu", progress=False)
    tied = project_images(
        g, d, target, ProjectConfig(**base, w_plus=True, layer_tie=100.0), device="cpu", progress=False
    )
    held = project_images(
        g, d, target, ProjectConfig(**{**base, "latent_prior": 100.0}, w_plus=False), device="cpu", progress=False
    )
    free_prior, free_tie = latent_penalties(free["latents"], mean, white)
    _, tied_tie = latent_penalties(tied["latents"], mean, white)
    held_prior, _ = latent_penalties(held["latents"][:, 0], mean, white)
    assert (tied_tie < 0.2 * free_tie).all(), (free_tie, tied_tie)
    assert (held_prior < 0.2 * free_prior).all(), (free_prior, held_prior)
    with pytest.raises(ValueError, match="layer_tie"):
        ProjectConfig(w_plus=False, layer_tie=1.0)


# --------------------------------------------------------------------------------------------
# Projection
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_projection_recovers_generated_images(tiny_gan):
    g, d = tiny_gan
    _, target = synthesize_targets(g, 4, seed=11)
    config = ProjectConfig(steps=120, batch_size=2, mean_latent_samples=1000, feature_blocks=2, seed=0)
    out = project_images(g, d, target, config, device="cpu", progress=False)

    assert out["latents"].shape == (4, g.n_latent, TINY.style_dim)
    assert [n.shape for n in out["noises"]] == [
        (4, 1, *getattr(g.noises, f"noise_{i}").shape[2:]) for i in range(g.num_layers)
    ]
    assert out["images"].shape == target.shape
    assert out["feature_source"].startswith("discriminator")
    # Much closer than the mean-latent start, for every image.
    assert (out["psnr"] > out["psnr_init"] + 6.0).all(), (out["psnr_init"], out["psnr"])
    # The optimised loss goes down.
    hist = out["loss_history"]
    assert hist.shape == (120,) and torch.isfinite(hist).all()
    assert hist[-10:].mean() < 0.1 * hist[:10].mean()
    # The returned PSNR is that of the returned images, re-synthesised from the returned variables.
    with torch.no_grad():
        again, _ = g([out["latents"]], input_is_latent=True, noise=out["noises"])
    torch.testing.assert_close(again, out["images"])
    torch.testing.assert_close(psnr(again.clamp(-1, 1), target), out["psnr"])


def test_projection_w_mode_repeats_one_latent(tiny_gan):
    g, _ = tiny_gan
    _, target = synthesize_targets(g, 2, seed=12)
    config = ProjectConfig(steps=10, batch_size=2, w_plus=False, feature_weight=0.0, mean_latent_samples=500)
    out = project_images(g, None, target, config, device="cpu", progress=False)
    lat = out["latents"]
    assert lat.shape == (2, g.n_latent, TINY.style_dim)
    assert torch.equal(lat, lat[:, :1].expand_as(lat))
    assert out["feature_source"].startswith("none")


def test_projection_rejects_bad_input(tiny_gan):
    g, d = tiny_gan
    config = ProjectConfig(steps=1, mean_latent_samples=100)
    with pytest.raises(ValueError, match=r"\(N, 3, 32, 32\)"):
        project_images(g, d, torch.zeros(1, 3, 16, 16), config, device="cpu", progress=False)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        project_images(g, d, torch.full((1, 3, 32, 32), 200.0), config, device="cpu", progress=False)
    with pytest.raises(ValueError, match="feature_weight"):
        project_images(g, None, torch.zeros(1, 3, 32, 32), config, device="cpu", progress=False)


@pytest.mark.slow
def test_project_file_round_trip(tiny_gan, tmp_path):
    from gan2shape.stylegan2.checkpoint import save_checkpoint

    g, d = tiny_gan
    ckpt = save_checkpoint(tmp_path / "gan.pt", g, d) or tmp_path / "gan.pt"
    _, target = synthesize_targets(g, 3, seed=13)
    ids = ["a", "b", "c"]
    write_artifact(tmp_path / "heads.h5", "heads", {"image": to_uint8(target)}, ids=ids)
    config = ProjectConfig(steps=15, batch_size=2, mean_latent_samples=500, feature_blocks=2)
    out = project_file(
        ckpt, tmp_path / "heads.h5", tmp_path / "latents.h5", config, device="cpu", limit=2, progress=False
    )

    with read_artifact(out, kind="latents", require=("latent", "image_recon", "psnr")) as art:
        assert art.ids == ids[:2]
        latent = art.tensor("latent")
        noises = [art.tensor(f"noise_{i}") for i in range(g.num_layers)]
        recon = art.tensor("image_recon")
        stored_psnr = art.tensor("psnr")
        assert art.attrs["checkpoint"] == str(ckpt)
        assert art.attrs["project_config"]["steps"] == 15
        assert art.attrs["feature_source"].startswith("discriminator")
    assert latent.shape == (2, g.n_latent, TINY.style_dim) and latent.dtype == torch.float32
    assert recon.shape == (2, 3, 32, 32) and recon.dtype == torch.uint8
    with torch.no_grad():
        again, _ = g([latent], input_is_latent=True, noise=noises)
    assert (to_uint8(again).int() - recon.int()).abs().max() <= 1
    # Stored PSNR is against the (uint8-quantised) input images.
    target_q = target[:2].add(1).mul(127.5).round().div(127.5).sub(1)
    torch.testing.assert_close(stored_psnr, psnr(again.clamp(-1, 1), target_q), atol=1e-3, rtol=1e-4)

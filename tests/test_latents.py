"""Encoder offsets to GAN latents (gan2shape.method.latents) against the reference's rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gan2shape.errors import ArtifactError
from gan2shape.method.latents import (
    OffsetMap,
    center_hidden,
    check_w_target,
    latent_offset,
    make_offset_map,
    mapping_split,
    offset_to_latent,
    w_spread,
    w_target_from_artifact,
    w_target_from_z,
)
from gan2shape.stylegan2.model import Generator

D = 16


@pytest.fixture(scope="module")
def gen():
    torch.manual_seed(0)
    g = Generator(8, style_dim=D, n_mlp=8, channel_multiplier=1, channel_max=16).eval()
    # random biases so that every layer matters (the default biases are zero)
    with torch.no_grad():
        for layer in list(g.style)[1:]:
            layer.bias.normal_()
    return g


def _style_forward(g, x, skip=0, depth=100):
    """The reference's rule, verbatim in meaning: modules [PixelNorm, L1..L8] with index in [skip, depth)."""
    for i, module in enumerate(g.style):
        if i >= depth:
            break
        if i >= skip:
            x = module(x)
    return x


@pytest.mark.parametrize("f1_d", [0, 2, 7, 8])
def test_offset_matches_the_reference_rule(gen, f1_d):
    g = torch.Generator().manual_seed(f1_d)
    e_p, e_t = torch.randn(5, D, generator=g), torch.randn(1, D, generator=g)
    zero = torch.zeros(1, D)
    k = 8 - f1_d
    h_ref = _style_forward(gen, zero, depth=k)
    w0_ref = _style_forward(gen, zero)
    expected = _style_forward(gen, h_ref + (e_p - e_t), skip=k) - w0_ref
    h0 = center_hidden(gen, f1_d)
    torch.testing.assert_close(h0, h_ref, atol=1e-6, rtol=1e-6)
    got = latent_offset(e_p, e_t, make_offset_map(gen, "mapping", f1_d))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_f1_d_2_uses_the_last_three_linear_layers(gen):
    # the reference's split: h0 after PixelNorm + 5 linear layers, the tail = linear layers 6, 7, 8
    assert mapping_split(gen, 2) == (5, 5, False)
    assert mapping_split(gen, 8) == (0, 0, True)
    e = torch.randn(3, D)
    h0 = center_hidden(gen, 2)
    layers = list(gen.style)
    manual_h0 = torch.zeros(1, D)
    for layer in layers[:6]:
        manual_h0 = layer(manual_h0)
    torch.testing.assert_close(h0, manual_h0)

    def tail(x):
        for layer in layers[6:]:
            x = layer(x)
        return x

    got = latent_offset(e, None, make_offset_map(gen, "mapping", 2), relative=False)
    torch.testing.assert_close(got, tail(h0 + e) - tail(h0))


@pytest.mark.parametrize("kind", ["mapping", "linear"])
def test_equal_encodings_give_w_target_exactly(gen, kind):
    e = torch.randn(4, D)
    omap = make_offset_map(gen, kind, 2)
    w_plus = torch.randn(4, gen.n_latent, D)
    assert torch.equal(offset_to_latent(w_plus, e, e.clone(), omap), w_plus)
    w = torch.randn(1, D)
    out = offset_to_latent(w, e, e.clone(), omap)
    assert out.shape == (4, D) and torch.equal(out, w.expand(4, D))


@pytest.mark.parametrize("kind", ["mapping", "linear"])
def test_w_plus_gets_the_same_offset_on_every_layer(gen, kind):
    e_p, e_t = torch.randn(3, D), torch.randn(3, D)
    w_plus = torch.randn(1, gen.n_latent, D)
    w, offset = offset_to_latent(w_plus, e_p, e_t, make_offset_map(gen, kind, 2), return_offset=True)
    assert w.shape == (3, gen.n_latent, D) and offset.shape == (3, D)
    torch.testing.assert_close(w - w_plus, offset[:, None, :].expand(-1, gen.n_latent, -1))
    assert offset.abs().max() > 0


@pytest.mark.parametrize("kind", ["mapping", "linear"])
def test_gradients_reach_the_encodings(gen, kind):
    e_p = torch.randn(2, D, requires_grad=True)
    offset = latent_offset(e_p, torch.zeros(1, D), make_offset_map(gen, kind, 2))
    (offset**2).mean().backward()
    assert e_p.grad is not None and e_p.grad.abs().sum() > 0


def test_linear_offset_is_the_encoding_in_units_of_the_w_spread(gen):
    mean, std = w_spread(gen, n=20000, seed=3)
    w = gen.get_latent(torch.randn(20000, D, generator=torch.Generator().manual_seed(4))).detach()
    # the spread of an independent draw agrees to sampling error
    torch.testing.assert_close(std, w.std(0), rtol=0.05, atol=1e-4)
    torch.testing.assert_close(mean, w.mean(0), rtol=0.0, atol=0.05 * float(std.max()))
    omap = make_offset_map(gen, "linear")
    e = torch.randn(3, D)
    torch.testing.assert_close(omap(e), e * w_spread(gen)[1])  # seed 0, 10,000 draws: the map's own spread
    # linear in e: small encodings give small offsets (the 'mapping' map with F1_d = n_mlp does not)
    assert torch.allclose(omap(1e-3 * e), 1e-3 * omap(e), rtol=1e-5, atol=1e-9)
    pn = make_offset_map(gen, "mapping", 8)
    big, small = pn(e).norm(dim=1), pn(1e-3 * e).norm(dim=1)
    assert (small > 0.5 * big).all()  # PixelNorm: the size of e is lost


def test_errors_are_clear(gen):
    omap = make_offset_map(gen, "mapping", 2)
    e = torch.randn(2, D)
    with pytest.raises(ValueError, match="f1_d"):
        center_hidden(gen, 9)
    with pytest.raises(ValueError, match="needs e_target"):
        latent_offset(e, None, omap, relative=True)
    with pytest.raises(ValueError, match="e_target must be"):
        latent_offset(e, torch.zeros(3, D), omap)
    with pytest.raises(ValueError, match="w_target must be"):
        offset_to_latent(torch.zeros(2, 3, D), e, e, omap)
    with pytest.raises(ValueError, match="batch"):
        offset_to_latent(torch.zeros(3, D), e, e, omap)
    with pytest.raises(ValueError, match="needs h0"):
        OffsetMap("mapping", gen, 2, h0=torch.zeros(2, D))
    with pytest.raises(ValueError, match="needs scale"):
        OffsetMap("linear", gen)
    with pytest.raises(ValueError, match="offset kind"):
        make_offset_map(gen, "tail")


def test_w_target_sources(gen, tmp_path):
    from gan2shape.artifacts import write_artifact

    z = torch.randn(3, D)
    w = w_target_from_z(gen, z)
    assert w.shape == (3, gen.n_latent, D)
    torch.testing.assert_close(w[:, -1], gen.get_latent(z).detach())
    latents = np.random.default_rng(0).standard_normal((4, gen.n_latent, D)).astype(np.float32)
    path = write_artifact(tmp_path / "latents.h5", "latents", {"latent": latents}, ids=["a", "b", "c", "d"])
    got = w_target_from_artifact(path, gen, index=[1, 3])
    assert torch.equal(got, torch.from_numpy(latents[[1, 3]]))
    check_w_target(got, gen)
    bad = write_artifact(tmp_path / "bad.h5", "latents", {"latent": latents[:, :2]}, ids=list("abcd"))
    with pytest.raises(ArtifactError, match="another generator"):
        w_target_from_artifact(bad, gen)

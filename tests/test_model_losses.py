"""Tests of gan2shape.model.losses."""

from __future__ import annotations

import logging

import pytest
import torch

from gan2shape.model import (
    PerceptualLoss,
    feature_matching,
    make_perceptual,
    masked_l1,
    offset_regulariser,
    smoothness,
)
from gan2shape.stylegan2 import Discriminator


def test_masked_l1_analytic() -> None:
    a = torch.zeros(2, 3, 4, 4)
    b = torch.zeros(2, 3, 4, 4)
    b[0] = 1.0  # image 0: |a-b| = 1 everywhere
    b[1, :, :2] = 2.0  # image 1: 2 on the top half, 0 elsewhere
    torch.testing.assert_close(masked_l1(a, b), torch.tensor([1.0, 1.0]))
    top = torch.zeros(2, 1, 4, 4)
    top[:, :, :2] = 1.0
    torch.testing.assert_close(masked_l1(a, b, top), torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(masked_l1(a, b, 1 - top), torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(masked_l1(a, b, torch.zeros(2, 1, 4, 4)), torch.tensor([0.0, 0.0]))
    with pytest.raises(ValueError, match="mask"):
        masked_l1(a, b, torch.ones(2, 4, 4))


def test_smoothness_affine_zero_quadratic_analytic() -> None:
    rows, cols = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    constant = torch.full((1, 8, 8), 0.7)
    ramp = (0.3 + 0.05 * cols - 0.02 * rows)[None]
    quad = (0.25 * cols**2)[None]
    torch.testing.assert_close(smoothness(constant), torch.tensor([0.0]))
    torch.testing.assert_close(smoothness(ramp), torch.tensor([0.0]), atol=1e-6, rtol=0)
    # d2/dx2 of q*col^2 is 2q; the other three second differences vanish.
    torch.testing.assert_close(smoothness(quad), torch.tensor([0.5]))
    batch = torch.stack([ramp[0], quad[0]])[:, None]  # (2, 1, 8, 8) per-image values
    torch.testing.assert_close(smoothness(batch), torch.tensor([0.0, 0.5]), atol=1e-6, rtol=0)


def test_feature_matching_and_offset_regulariser() -> None:
    fa = [torch.zeros(2, 4, 8, 8), torch.zeros(2, 8, 4, 4)]
    fb = [torch.ones(2, 4, 8, 8), torch.full((2, 8, 4, 4), 3.0)]
    torch.testing.assert_close(feature_matching(fa, fb), torch.tensor([4.0, 4.0]))
    torch.testing.assert_close(feature_matching(fa, fa), torch.tensor([0.0, 0.0]))
    torch.testing.assert_close(offset_regulariser(torch.tensor([[1.0, -3.0], [0.0, 2.0]])), torch.tensor([5.0, 2.0]))


@pytest.fixture(scope="module")
def disc() -> Discriminator:
    torch.manual_seed(0)
    return Discriminator(32, channel_multiplier=1, channel_max=32).eval()


def test_perceptual_discriminator_zero_iff_identical(disc: Discriminator, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="gan2shape.model.losses"):
        loss = make_perceptual("discriminator", discriminator=disc, n_blocks=2)
    assert "discriminator" in caplog.text
    torch.manual_seed(1)
    a = torch.rand(2, 3, 16, 16) * 2 - 1  # resized to the discriminator's 32 inside
    b = a.clone()
    b[1] = torch.rand(3, 16, 16) * 2 - 1
    d = loss(a, b)
    assert d.shape == (2,)
    assert d[0] == 0 and d[1] > 0
    mask = torch.ones(2, 1, 16, 16)
    torch.testing.assert_close(loss(a, b, mask), d)
    # Gradients reach the images, not the frozen discriminator.
    a.requires_grad_(True)
    loss(a, b).sum().backward()
    assert a.grad is not None and a.grad[1].abs().sum() > 0
    assert all(p.grad is None for p in disc.parameters())


def test_perceptual_none_and_lpips_unavailable(disc: Discriminator) -> None:
    a = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(make_perceptual("none")(a, -a), torch.zeros(2))
    with pytest.raises(RuntimeError, match="'discriminator'") as info:
        make_perceptual("lpips")
    assert "missing" in str(info.value) and "lpips" in str(info.value)
    with pytest.raises(ValueError, match="one of"):
        PerceptualLoss("vgg")
    with pytest.raises(ValueError, match="discriminator="):
        PerceptualLoss("discriminator")
    with pytest.raises(ValueError, match="n_blocks"):
        PerceptualLoss("discriminator", discriminator=disc, n_blocks=99)

"""Fixtures shared by the test files: the tiny StyleGAN2 the method and export tests run on."""

from __future__ import annotations

from pathlib import Path

import pytest

from gan2shape.config import GanConfig

# 32px, style_dim 32, 2 mapping layers, at most 32 channels: seconds to build, real architecture.
TINY_GAN = GanConfig(size=32, style_dim=32, n_mlp=2, channel_multiplier=1, channel_max=32, seed=5)


@pytest.fixture(scope="session")
def tiny_gan_path(tmp_path_factory) -> Path:
    """TINY_GAN (untrained, seeded) saved in the project's checkpoint format, once per session."""
    from gan2shape.stylegan2.checkpoint import save_checkpoint
    from gan2shape.stylegan2.train import build_networks

    _, d, g_ema = build_networks(TINY_GAN)
    path = tmp_path_factory.mktemp("tiny_gan") / "tiny.pt"
    save_checkpoint(path, g_ema, d)
    return path

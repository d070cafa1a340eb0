"""Fixtures shared by the test files: the tiny StyleGAN2 the method and export tests run on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# One torch thread per test process (and its subprocesses: the CLI, DVC's commands; the workflow's
# rules set --threads themselves). The test networks are tiny, and two intra-op threads per process
# on a shared 2-core machine spin against the other processes: measured 2-2.5x slower than one
# thread at a load average of 2. Export OMP_NUM_THREADS to choose otherwise.
os.environ.setdefault("OMP_NUM_THREADS", "1")

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

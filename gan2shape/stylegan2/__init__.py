"""StyleGAN2 (rosinality/stylegan2-pytorch layout): networks, resampling ops, checkpoint I/O."""

from __future__ import annotations

from gan2shape.stylegan2.checkpoint import (
    CheckpointError,
    LoadedCheckpoint,
    infer_config,
    load_checkpoint,
    save_checkpoint,
)
from gan2shape.stylegan2.model import (
    Discriminator,
    Generator,
    StyleGAN2Config,
    stylegan2_channels,
    to_channels_last,
)

__all__ = [
    "CheckpointError",
    "Discriminator",
    "Generator",
    "LoadedCheckpoint",
    "StyleGAN2Config",
    "infer_config",
    "load_checkpoint",
    "save_checkpoint",
    "stylegan2_channels",
    "to_channels_last",
]

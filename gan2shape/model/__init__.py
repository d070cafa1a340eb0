"""GAN2Shape's networks, decoding of their outputs into the photo-geometric factors, and losses.

networks: DepthNet, AlbedoNet, ViewNet, LightNet, InversionEncoder, InstanceEnsemble.
decode: decode_depth, decode_view, decode_light, reconstruct (pure functions).
losses: masked_l1, smoothness, PerceptualLoss / make_perceptual, feature_matching,
offset_regulariser (each returns one value per image, shape (N,)).
"""

from __future__ import annotations

from .decode import decode_depth, decode_light, decode_view, reconstruct
from .losses import (
    PERCEPTUAL_SOURCES,
    PerceptualLoss,
    feature_matching,
    make_perceptual,
    masked_l1,
    offset_regulariser,
    smoothness,
)
from .networks import (
    AlbedoNet,
    ConvEncoder,
    DepthNet,
    EncoderDecoder,
    InstanceEnsemble,
    InversionEncoder,
    LightNet,
    ResBlockDown,
    ViewNet,
    default_nf,
)

__all__ = [
    "AlbedoNet",
    "ConvEncoder",
    "DepthNet",
    "EncoderDecoder",
    "InstanceEnsemble",
    "InversionEncoder",
    "LightNet",
    "PERCEPTUAL_SOURCES",
    "PerceptualLoss",
    "ResBlockDown",
    "ViewNet",
    "decode_depth",
    "decode_light",
    "decode_view",
    "default_nf",
    "feature_matching",
    "make_perceptual",
    "masked_l1",
    "offset_regulariser",
    "reconstruct",
    "smoothness",
]

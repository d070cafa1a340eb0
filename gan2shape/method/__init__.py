"""The GAN2Shape method: shape priors, pseudo-sample sampling, latent offsets, the steps (docs/METHOD.md 3)."""

from __future__ import annotations

from gan2shape.method.prior import (
    BOX_SOURCES,
    PRIOR_VARIANTS,
    box_from_mask,
    centered_box,
    ellipsoid_prior,
    prior_boxes,
    prior_variant,
)

__all__ = [
    "BOX_SOURCES",
    "PRIOR_VARIANTS",
    "box_from_mask",
    "centered_box",
    "ellipsoid_prior",
    "prior_boxes",
    "prior_variant",
]

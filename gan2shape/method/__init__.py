"""The GAN2Shape method: the shape prior and the per-stage steps (METHOD.md section 3)."""

from __future__ import annotations

from gan2shape.method.prior import box_from_mask, centered_box, ellipsoid_prior

__all__ = ["box_from_mask", "centered_box", "ellipsoid_prior"]

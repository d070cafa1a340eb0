"""The photo-geometric forward pass of the method (docs/METHOD.md section 3): predict the factors of
an image (canonical depth and albedo, view, light) with the four networks, re-render it, and score
the render against the image (``photo_loss``, the loss of step 1 and of both terms of step 3)."""

from __future__ import annotations

import torch
from torch import nn

from gan2shape.method.context import Context
from gan2shape.model.decode import decode_depth, decode_light, decode_view, reconstruct
from gan2shape.model.losses import masked_l1, smoothness

__all__ = ["predict", "predict_view_light", "with_shape", "photo_loss"]


def predict_view_light(ctx: Context, nets: dict[str, nn.Module], image: torch.Tensor) -> dict[str, torch.Tensor]:
    """View and light of images (M, 3, S, S) in [-1, 1] (grouped by instance): view_raw (M, 6),
    view (M, 6) physical, light (M, 4) raw, ambient/diffuse (M,), light_dir (M, 3) unit."""
    cfg = ctx.config
    view_raw = nets["view"](image)
    view = decode_view(view_raw, cfg.xyz_rotation_range_deg, cfg.xy_translation_range, cfg.z_translation_range)
    light = nets["light"](image)
    ambient, diffuse, light_dir = decode_light(light)
    return {
        "view_raw": view_raw,
        "view": view,
        "light": light,
        "ambient": ambient,
        "diffuse": diffuse,
        "light_dir": light_dir,
    }


def predict(ctx: Context, nets: dict[str, nn.Module], image: torch.Tensor) -> dict[str, torch.Tensor]:
    """All factors of the photo-geometric model for targets image (N, 3, S, S) in [-1, 1]:
    depth (N, S, S) canonical, albedo (N, 3, S, S) in [-1, 1], plus ``predict_view_light``'s."""
    depth = decode_depth(nets["depth"](image), ctx.camera)
    return {"depth": depth, "albedo": nets["albedo"](image), **predict_view_light(ctx, nets, image)}


def with_shape(f_target: dict[str, torch.Tensor], f_views: dict[str, torch.Tensor], b: int) -> dict[str, torch.Tensor]:
    """Factors of B images per instance sharing their instance's canonical shape: depth/albedo of
    f_target (N, ...) repeated B times per instance, view/light of f_views (N*B, ...)."""
    return {
        **f_views,
        "depth": f_target["depth"].repeat_interleave(b, 0),
        "albedo": f_target["albedo"].repeat_interleave(b, 0),
    }


def photo_loss(
    ctx: Context,
    f: dict[str, torch.Tensor],
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    smooth: bool = True,
    flip: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The step-1 loss per image: masked L1 + lam_perc * perceptual (+ lam_smooth, or lam_smooth_joint
    in joint mode (``MethodConfig.smooth_weight``), * (smoothness of depth + of diffuse shading) when
    ``smooth``).

    f: ``predict`` output for M images; target: (M, 3, S, S) in [-1, 1]; mask: (M, 1, S, S) in
    [0, 1] multiplied into the render's valid mask, or None.
    flip: the reference's flip1/flip3 symmetry term: also render the horizontally mirrored depth and
    albedo with the same view and light, add its L1 + lam_perc * perceptual against the same
    target, and mask both terms with the product of the two renders' valid masks.
    Returns ((M,) loss, reconstruct dict of the unflipped render).
    """
    cfg = ctx.config
    rec = reconstruct(f["albedo"], f["depth"], f["view"], f["ambient"], f["diffuse"], f["light_dir"], ctx.camera)
    m = rec["mask"] if mask is None else rec["mask"] * mask
    renders = [rec["image"]]
    if flip:
        rec_f = reconstruct(
            f["albedo"].flip(3), f["depth"].flip(2), f["view"], f["ambient"], f["diffuse"], f["light_dir"], ctx.camera
        )
        m = m * rec_f["mask"]
        renders.append(rec_f["image"])
    loss = target.new_zeros(target.shape[0])
    for image in renders:
        loss = loss + masked_l1(image, target, m)
        if cfg.lam_perc > 0 and cfg.perceptual != "none":
            loss = loss + cfg.lam_perc * ctx.perceptual(image, target, m)
    if smooth and cfg.smooth_weight > 0:
        loss = loss + cfg.smooth_weight * (smoothness(f["depth"]) + smoothness(rec["diffuse_shading"]))
    return loss, rec

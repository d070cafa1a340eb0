"""From raw network outputs to the physical factors of the photo-geometric model, and back to an image.

docs/METHOD.md section 1. All functions are pure and differentiable; shapes are checked at entry.
Conventions follow gan2shape.render (views in radians and camera units; light direction
normalize([lx, ly, 1]), (0, 0, 1) being a light at the camera).
"""

from __future__ import annotations

import math

import torch

from gan2shape.render import Camera, depth_to_normals, lambertian, render_view, shade
from gan2shape.render._checks import check_image_size, check_tensor

__all__ = ["decode_depth", "decode_view", "decode_light", "reconstruct"]


def decode_depth(raw: torch.Tensor, camera: Camera, border: int = 2, border_rows: bool = False) -> torch.Tensor:
    """Canonical depth from the depth net's raw output.

    raw: (N, 1, H, W) or (N, H, W) float, any real values; H = W = camera.image_size.
    Steps: subtract each map's spatial mean, tanh, rescale [-1, 1] -> [min_depth, max_depth],
    then set the ``border`` outermost columns (and rows too if ``border_rows``) to
    camera.border_depth. The reference (and unsup3d) clamp only the left and right columns
    (``border_rows=False``, the default). The reference blends ``depth*(1-1.02) + 1.02*border_depth``
    there, a constant-padding quirk; we set border_depth exactly.
    Returns (N, H, W) in [min_depth, max_depth] (border pixels equal border_depth, which lies in
    that range). A constant raw map gives the mid depth (min+max)/2 off the border.
    """
    if isinstance(raw, torch.Tensor) and raw.dim() == 4:
        check_tensor("raw depth", raw, ("N", 1, "H", "W"))
        raw = raw[:, 0]
    dims = check_tensor("raw depth", raw, ("N", "H", "W"))
    check_image_size("raw depth", dims["H"], dims["W"], camera.image_size)
    if isinstance(border, bool) or not isinstance(border, int) or not 0 <= 2 * border < dims["W"]:
        raise ValueError(f"border must be an int in [0, {(dims['W'] - 1) // 2}], got {border!r}")
    d = torch.tanh(raw - raw.mean(dim=(1, 2), keepdim=True))
    depth = (1 + d) / 2 * camera.max_depth + (1 - d) / 2 * camera.min_depth
    if border == 0:
        return depth
    h, w = dims["H"], dims["W"]
    edge = torch.zeros(h, w, dtype=torch.bool, device=raw.device)
    edge[:, :border] = True
    edge[:, w - border :] = True
    if border_rows:
        edge[:border, :] = True
        edge[h - border :, :] = True
    return torch.where(edge, torch.full_like(depth, camera.border_depth), depth)


def _add_mean(name: str, raw: torch.Tensor, mean: torch.Tensor | None, k: int) -> torch.Tensor:
    if mean is None:
        return raw
    if not isinstance(mean, torch.Tensor) or mean.shape not in ((k,), (1, k), tuple(raw.shape)):
        got = tuple(mean.shape) if isinstance(mean, torch.Tensor) else type(mean).__name__
        raise ValueError(f"{name} must have shape ({k},), (1, {k}) or (N, {k}) matching the raw output, got {got}")
    return raw + mean.to(raw)


def decode_view(
    raw: torch.Tensor,
    xyz_rotation_range_deg: float = 60.0,
    xy_translation_range: float = 0.1,
    z_translation_range: float = 0.0,
    mean_view: torch.Tensor | None = None,
) -> torch.Tensor:
    """Physical view from the view net's output.

    raw: (N, 6) float, typically in [-1, 1] (tanh). mean_view: None or (6,) / (N, 6), added to raw
    first (the reference's add_mean_V, in raw units).
    Returns (N, 6): 3 angles (pitch, yaw, roll) = v[:, :3] * range_deg * pi/180 radians,
    x/y translations v[:, 3:5] * xy_translation_range, z translation v[:, 5] * z_translation_range.
    """
    check_tensor("raw view", raw, ("N", 6))
    v = _add_mean("mean_view", raw, mean_view, 6)
    return torch.cat(
        [
            v[:, :3] * (math.pi / 180.0 * xyz_rotation_range_deg),
            v[:, 3:5] * xy_translation_range,
            v[:, 5:6] * z_translation_range,
        ],
        dim=1,
    )


def decode_light(
    raw: torch.Tensor, mean_light: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lighting from the light net's output.

    raw: (N, 4) float, typically in [-1, 1] (tanh). mean_light: None or (4,) / (N, 4), added first
    (the reference's add_mean_L).
    Returns ambient k_a = l0/2 + 0.5 (N,), diffuse k_d = l1/2 + 0.5 (N,) (both in [0, 1] for raw in
    [-1, 1]) and light_dir = normalize([l2, l3, 1]) (N, 3) unit vectors.
    """
    check_tensor("raw light", raw, ("N", 4))
    light = _add_mean("mean_light", raw, mean_light, 4)
    ambient = light[:, 0] / 2 + 0.5
    diffuse = light[:, 1] / 2 + 0.5
    direction = torch.cat([light[:, 2:4], torch.ones_like(light[:, :1])], dim=1)
    return ambient, diffuse, direction / direction.norm(dim=1, keepdim=True)


def reconstruct(
    albedo: torch.Tensor,
    depth: torch.Tensor,
    view: torch.Tensor,
    ambient: torch.Tensor,
    diffuse: torch.Tensor,
    light_dir: torch.Tensor,
    camera: Camera,
) -> dict[str, torch.Tensor]:
    """Shade the canonical albedo and render it from a view (the photo-geometric autoencoder).

    albedo: (N, 3, S, S) in [-1, 1]; depth: (N, S, S) canonical depth (decode_depth);
    view: (N, 6) physical (decode_view); ambient, diffuse: (N,); light_dir: (N, 3) unit
    (decode_light); S = camera.image_size.
    Returns a dict:
      image: (N, 3, S, S) in [-1, 1], the re-rendered image (clamped to [-1, 1] as in the reference);
      recon_depth: (N, S, S), depth seen from the view, in camera.depth_clamp;
      mask: (N, 1, S, S) in {0, 1}, valid (not clamped) pixels, detached (used to mask losses);
      canon_texture: (N, 3, S, S), the shaded albedo in the canonical frame;
      shading: (N, 1, S, S) = k_a + k_d * diffuse_shading;
      diffuse_shading: (N, 1, S, S) = max(0, <n, l>) in [0, 1] (its smoothness is a loss term);
      normals: (N, S, S, 3) unit canonical normals.
    """
    dims = check_tensor("albedo", albedo, ("N", 3, "S", "S"))
    check_tensor("depth", depth, ("N", "S", "S"), dims)
    check_image_size("albedo", dims["S"], dims["S"], camera.image_size)
    normals = depth_to_normals(depth, camera)
    texture, shading = shade(albedo, normals, ambient, diffuse, light_dir)
    diffuse_shading = lambertian(normals, light_dir)
    rendered = render_view(texture, depth, view, camera)
    return {
        "image": rendered.image.clamp(-1.0, 1.0),
        "recon_depth": rendered.depth,
        "mask": rendered.mask.detach(),
        "canon_texture": texture,
        "shading": shading,
        "diffuse_shading": diffuse_shading,
        "normals": normals,
    }

"""Lambertian shading of the photo-geometric model: s = k_a + k_d * max(0, <n, l>).

Normals and light follow the convention of mesh.py: a surface facing the camera has n_z > 0 and
l = normalize([lx, ly, 1]), so light (0, 0) shines from the camera.
"""

from __future__ import annotations

import torch

from ._checks import check_tensor

__all__ = ["light_direction", "lambertian", "shade"]


def light_direction(light_xy: torch.Tensor) -> torch.Tensor:
    """Unit light directions normalize([lx, ly, 1]).

    light_xy: (N, 2) float, any real values. Returns (N, 3).
    """
    check_tensor("light_xy", light_xy, ("N", 2))
    direction = torch.cat([light_xy, torch.ones_like(light_xy[:, :1])], dim=1)
    return direction / direction.norm(dim=1, keepdim=True)


def lambertian(normals: torch.Tensor, light_dir: torch.Tensor) -> torch.Tensor:
    """Diffuse term max(0, <n, l>).

    normals: (N, H, W, 3) float unit vectors; light_dir: (N, 3) float unit vectors.
    Returns (N, 1, H, W) in [0, 1].
    """
    dims = check_tensor("normals", normals, ("N", "H", "W", 3))
    check_tensor("light_dir", light_dir, ("N", 3), dims)
    cosine = (normals * light_dir[:, None, None, :]).sum(dim=-1)
    return cosine.clamp(min=0.0).unsqueeze(1)


def shade(
    albedo: torch.Tensor,
    normals: torch.Tensor,
    ambient: torch.Tensor,
    diffuse: torch.Tensor,
    light_dir: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shade an albedo map: texture = (albedo/2 + 0.5) * (k_a + k_d * max(0, <n, l>)) * 2 - 1.

    albedo: (N, 3, H, W) float in [-1, 1]; normals: (N, H, W, 3) unit vectors;
    ambient, diffuse: (N,) float (k_a, k_d, typically in [0, 1]); light_dir: (N, 3) unit vectors.
    Returns (texture (N, 3, H, W), shading (N, 1, H, W) = k_a + k_d * max(0, <n, l>)).
    """
    dims = check_tensor("albedo", albedo, ("N", 3, "H", "W"))
    check_tensor("normals", normals, ("N", "H", "W", 3), dims)
    check_tensor("ambient", ambient, ("N",), dims)
    check_tensor("diffuse", diffuse, ("N",), dims)
    check_tensor("light_dir", light_dir, ("N", 3), dims)
    shading = ambient[:, None, None, None] + diffuse[:, None, None, None] * lambertian(normals, light_dir)
    texture = (albedo / 2.0 + 0.5) * shading * 2.0 - 1.0
    return texture, shading

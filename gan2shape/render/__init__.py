"""Differentiable renderer of the photo-geometric model, pure PyTorch, batched, CPU and CUDA.

Modules: camera (intrinsics, depth <-> points <-> pixels), transform (view rotations), mesh (depth
map as a mesh, normals), rasterize (z-buffer), warp (canonical <-> view), shading (Lambertian),
prior (the ellipsoid shape prior and its variants: pure geometry on the image grid, imported as
gan2shape.render.prior).
Conventions are documented in camera.py (frames, pixels) and mesh.py (normals and light).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ._checks import check_image_size, check_same_device, check_tensor
from .camera import Camera, depth_to_points, pixel_coordinates, pixels_to_grid, points_to_pixels
from .mesh import depth_to_mesh, depth_to_normals, grid_faces
from .rasterize import Fragments, rasterize
from .shading import lambertian, light_direction, shade
from .transform import rotation_matrix, unwarp_points, warp_points
from .warp import canon_to_view_grid, valid_mask, view_depth, view_to_canon_grid

__all__ = [
    "Camera",
    "Fragments",
    "RenderedView",
    "canon_to_view_grid",
    "depth_to_mesh",
    "depth_to_normals",
    "depth_to_points",
    "grid_faces",
    "lambertian",
    "light_direction",
    "pixel_coordinates",
    "pixels_to_grid",
    "points_to_pixels",
    "rasterize",
    "render_view",
    "rotation_matrix",
    "shade",
    "unwarp_points",
    "valid_mask",
    "view_depth",
    "view_to_canon_grid",
    "warp_points",
]


@dataclass
class RenderedView:
    """A canonical texture + depth seen from a view.

    image: (N, C, H, W) float, the texture warped into the view (background where mask is 0,
        if one was given).
    depth: (N, H, W) float, view depth clamped to camera.depth_clamp.
    mask: (N, 1, H, W) float in {0, 1}, 1 where a face was hit (valid_mask of depth).
    """

    image: torch.Tensor
    depth: torch.Tensor
    mask: torch.Tensor


def render_view(
    canon_texture: torch.Tensor,
    canon_depth: torch.Tensor,
    view: torch.Tensor,
    camera: Camera,
    canon_mask: torch.Tensor | None = None,
    background: torch.Tensor | None = None,
) -> RenderedView:
    """Render a canonical texture and depth map from a view.

    canon_texture: (N, C, H, W) float (e.g. an image in [-1, 1]), H = W = camera.image_size.
    canon_depth: (N, H, W) float canonical depth.
    view: (N, 6) float physical view (3 angles in radians, 3 translations).
    canon_mask: (N, H, W) bool or None: only faces inside it are drawn (see view_depth).
    background: (N, C, H, W) float or None: used where the mask is 0.
    Returns RenderedView(image, depth, mask). The texture is sampled bilinearly
    (align_corners=True) at view_to_canon_grid; samples falling off the canonical image take
    the nearest border texel (padding_mode="border", so no dark fringe at the image edge).
    Where no background is given, the image where mask is 0 holds whatever the warp samples there.
    """
    dims = check_tensor("canon_texture", canon_texture, ("N", "C", "H", "W"))
    check_tensor("canon_depth", canon_depth, ("N", "H", "W"), dims)
    check_tensor("view", view, ("N", 6), dims)
    check_image_size("canon_texture", dims["H"], dims["W"], camera.image_size)
    if background is not None:
        check_tensor("background", background, ("N", "C", "H", "W"), dims)
    check_same_device(canon_texture=canon_texture, canon_depth=canon_depth, view=view, background=background)
    depth = view_depth(canon_depth, view, camera, canon_mask)
    mask = valid_mask(depth, camera)
    grid = view_to_canon_grid(depth, view, camera)
    image = F.grid_sample(
        canon_texture, grid.to(canon_texture.dtype), mode="bilinear", padding_mode="border", align_corners=True
    )
    if background is not None:
        image = torch.where(mask > 0, image, background)
    return RenderedView(image=image, depth=depth, mask=mask)

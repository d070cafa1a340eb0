"""Warps between the canonical frame and a view (unsup3d's renderer; docs/METHOD.md section 1).

The canonical depth map is a mesh (two triangles per pixel quad, vertices at the back-projected
pixel centres). A view rotates it about (0, 0, camera.rot_center_depth) and translates it; the
depth seen from the view comes from rasterizing that mesh. Grids follow grid_sample's
align_corners=True convention.
"""

from __future__ import annotations

import torch

from ._checks import check_image_size, check_same_device, check_tensor
from .camera import Camera, depth_to_points, pixels_to_grid, points_to_pixels
from .mesh import grid_faces
from .rasterize import rasterize
from .transform import unwarp_points, warp_points

__all__ = ["view_depth", "valid_mask", "view_to_canon_grid", "canon_to_view_grid"]


def _check_depth_and_view(name: str, depth: torch.Tensor, view: torch.Tensor, camera: Camera) -> dict[str, int]:
    dims = check_tensor(name, depth, ("N", "H", "W"))
    check_tensor("view", view, ("N", 6), dims)
    check_image_size(name, dims["H"], dims["W"], camera.image_size)
    check_same_device(**{name: depth, "view": view})
    return dims


def view_depth(
    canon_depth: torch.Tensor,
    view: torch.Tensor,
    camera: Camera,
    canon_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Depth of the canonical surface seen from a view.

    canon_depth: (N, H, W) float, canonical depth (typically in [min_depth, max_depth]), H = W = S.
    view: (N, 6) float, physical view (3 angles in radians, 3 translations).
    canon_mask: (N, H, W) bool or None; if given only faces whose three vertices are all inside
        the mask are drawn (e.g. a head without its background).
    Returns (N, H, W) view depth clamped to [min_depth - margin, max_depth + margin]
    (camera.depth_clamp); pixels that no face covers get max_depth + margin. Differentiable
    w.r.t. canon_depth and view (except where clamped).
    """
    dims = _check_depth_and_view("canon_depth", canon_depth, view, camera)
    n, h, w = dims["N"], dims["H"], dims["W"]
    faces = grid_faces(h, w, device=canon_depth.device)
    face_mask = None
    if canon_mask is not None:
        check_tensor("canon_mask", canon_mask, ("N", "H", "W"), dims, floating=False)
        if canon_mask.dtype != torch.bool:
            raise ValueError(f"canon_mask must be a bool tensor, got dtype {canon_mask.dtype}; use mask > 0.5")
        check_same_device(canon_depth=canon_depth, canon_mask=canon_mask)
        face_mask = canon_mask.reshape(n, h * w)[:, faces].all(dim=2)
    points = warp_points(depth_to_points(canon_depth, camera).reshape(n, h * w, 3), view, camera.rot_center_depth)
    depth = rasterize(points, faces, camera, face_mask).depth
    lower, upper = camera.depth_clamp
    return depth.clamp(min=lower, max=upper)


def valid_mask(view_depth: torch.Tensor, camera: Camera) -> torch.Tensor:
    """Pixels of a rendered view depth where a face was hit and not clamped at the far end.

    view_depth: (N, H, W) float, output of view_depth().
    Returns (N, 1, H, W) float in {0, 1}: 1 where view_depth < max_depth + margin.
    """
    check_tensor("view_depth", view_depth, ("N", "H", "W"))
    # Same rounding as the clamp in view_depth(), so clamped pixels compare equal, never below.
    upper = torch.tensor(camera.depth_clamp[1], dtype=view_depth.dtype, device=view_depth.device)
    return (view_depth < upper).to(view_depth.dtype).unsqueeze(1)


def view_to_canon_grid(view_depth: torch.Tensor, view: torch.Tensor, camera: Camera) -> torch.Tensor:
    """For each view pixel, where to sample the canonical image.

    view_depth: (N, H, W) float view depth (from view_depth()); view: (N, 6) physical view.
    Returns (N, H, W, 2) grid for grid_sample(canonical, grid, align_corners=True): the view
    pixel is back-projected with its depth, moved to the canonical frame and projected.
    """
    _check_depth_and_view("view_depth", view_depth, view, camera)
    points = unwarp_points(depth_to_points(view_depth, camera), view, camera.rot_center_depth)
    return pixels_to_grid(points_to_pixels(points, camera), camera.image_size)


def canon_to_view_grid(canon_depth: torch.Tensor, view: torch.Tensor, camera: Camera) -> torch.Tensor:
    """For each canonical pixel, where it lands in the view image.

    canon_depth: (N, H, W) float canonical depth; view: (N, 6) physical view.
    Returns (N, H, W, 2) in grid_sample coordinates (align_corners=True; [-1, 1] inside the view).
    """
    _check_depth_and_view("canon_depth", canon_depth, view, camera)
    points = warp_points(depth_to_points(canon_depth, camera), view, camera.rot_center_depth)
    return pixels_to_grid(points_to_pixels(points, camera), camera.image_size)

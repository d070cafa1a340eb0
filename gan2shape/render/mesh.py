"""A depth map as a triangle mesh, and its normals.

Normal convention (unsup3d's): n = normalize(tu x tv) with tu the 3D step along +x (columns) and
tv the step along +y (rows). In the camera frame (x right, y down, z forward) a surface facing the
camera gets n_z > 0; n is the NEGATED outward (towards-the-camera) normal. The light direction
l = normalize([lx, ly, 1]) of shading.py is the negated towards-the-light vector in the same sense,
so <n, l> is the usual cosine between the outward normal and the direction to the light, and
l = (0, 0, 1) is a light at the camera.
"""

from __future__ import annotations

import torch

from ._checks import check_tensor
from .camera import Camera, depth_to_points

__all__ = ["grid_faces", "depth_to_mesh", "depth_to_normals"]


def grid_faces(height: int, width: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Two triangles per pixel quad over a row-major vertex grid (vertex index = row * W + col).

    For the quad with corners tl=(r, c), tr=(r, c+1), bl=(r+1, c), br=(r+1, c+1) the faces are
    (tl, tr, bl) and (tr, br, bl) (split along the tr-bl diagonal); both wind the same way
    (positive signed area in (x=col, y=row) pixel coordinates). Face 2*(r*(W-1) + c) + k is
    triangle k of quad (r, c).
    Returns (F, 3) long, F = 2 * (H-1) * (W-1).
    """
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 2:
            raise ValueError(f"grid_faces: {name} must be an int >= 2, got {value!r}")
    idx = torch.arange(height * width, device=device).reshape(height, width)
    tl, tr = idx[:-1, :-1], idx[:-1, 1:]
    bl, br = idx[1:, :-1], idx[1:, 1:]
    quads = torch.stack([torch.stack([tl, tr, bl], dim=-1), torch.stack([tr, br, bl], dim=-1)], dim=-2)
    return quads.reshape(-1, 3)


def depth_to_mesh(depth: torch.Tensor, camera: Camera) -> tuple[torch.Tensor, torch.Tensor]:
    """The depth map as a mesh in the camera frame.

    depth: (N, H, W) float, positive, H = W = camera.image_size.
    Returns vertices (N, H*W, 3) (back-projected pixel centres, row-major) and faces (F, 3) long
    from grid_faces(H, W).
    """
    points = depth_to_points(depth, camera)
    n, h, w, _ = points.shape
    return points.reshape(n, h * w, 3), grid_faces(h, w, device=depth.device)


def depth_to_normals(depth: torch.Tensor, camera: Camera) -> torch.Tensor:
    """Unit normals of a depth map from central differences of its back-projected points.

    depth: (N, H, W) float, positive, H = W = camera.image_size.
    Returns (N, H, W, 3) unit vectors, n = normalize(tu x tv) with tu = P[:, 1:-1, 2:] - P[:, 1:-1, :-2]
    and tv = P[:, 2:, 1:-1] - P[:, :-2, 1:-1]; the 1-pixel border is (0, 0, 1). A surface facing
    the camera has n_z > 0 (see the module docstring for the sign convention).
    """
    check_tensor("depth", depth, ("N", "H", "W"))
    points = depth_to_points(depth, camera)
    tu = points[:, 1:-1, 2:] - points[:, 1:-1, :-2]
    tv = points[:, 2:, 1:-1] - points[:, :-2, 1:-1]
    inner = torch.cross(tu, tv, dim=-1)
    # eps keeps the normalisation differentiable for a degenerate (zero) cross product.
    inner = inner / (inner.norm(dim=-1, keepdim=True) + 1e-12)
    normals = depth.new_zeros(depth.shape + (3,))
    normals[..., 2] = 1.0
    normals[:, 1:-1, 1:-1] = inner
    return normals

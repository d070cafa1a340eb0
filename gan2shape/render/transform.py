"""Rigid view transforms: rotation about a point in front of the camera, then translation.

A view is always physical here: (N, 6) = (pitch, yaw, roll) in radians about the camera's x, y, z
axes, then (tx, ty, tz) in camera units. Mapping network outputs in [-1, 1] to these numbers is
the model's job, not the renderer's.
"""

from __future__ import annotations

import torch

from ._checks import check_tensor

__all__ = ["rotation_matrix", "warp_points", "unwarp_points"]


def rotation_matrix(angles: torch.Tensor) -> torch.Tensor:
    """Rotation matrices R = Rx(a0) @ Ry(a1) @ Rz(a2) (the unsup3d convention).

    angles: (N, 3) float radians about x (pitch), y (yaw), z (roll).
    Returns (N, 3, 3); R @ p rotates column vectors p.
    """
    check_tensor("angles", angles, ("N", 3))
    cos, sin = torch.cos(angles), torch.sin(angles)
    one, zero = torch.ones_like(cos[:, 0]), torch.zeros_like(cos[:, 0])

    def mat(rows: list[list[torch.Tensor]]) -> torch.Tensor:
        return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)

    cx, cy, cz = cos.unbind(1)
    sx, sy, sz = sin.unbind(1)
    rx = mat([[one, zero, zero], [zero, cx, -sx], [zero, sx, cx]])
    ry = mat([[cy, zero, sy], [zero, one, zero], [-sy, zero, cy]])
    rz = mat([[cz, -sz, zero], [sz, cz, zero], [zero, zero, one]])
    return rx @ ry @ rz


def _check_view(points: torch.Tensor, view: torch.Tensor) -> int:
    dims = check_tensor("view", view, ("N", 6))
    check_tensor("points", points, (3,), leading=True)
    if points.dim() < 2 or points.shape[0] != dims["N"]:
        raise ValueError(
            f"points must have shape (N, ..., 3) with N={dims['N']} matching view (N, 6), got {tuple(points.shape)}"
        )
    return dims["N"]


def warp_points(points: torch.Tensor, view: torch.Tensor, rot_center_depth: float) -> torch.Tensor:
    """Move points from the canonical frame into the view: p' = R (p - c) + c + t.

    points: (N, ..., 3) float, camera frame.
    view: (N, 6) float = (3 angles in radians, 3 translations).
    rot_center_depth: c = (0, 0, rot_center_depth).
    Returns (N, ..., 3).
    """
    n = _check_view(points, view)
    rot = rotation_matrix(view[:, :3])
    flat = points.reshape(n, -1, 3)
    center = flat.new_tensor([0.0, 0.0, float(rot_center_depth)])
    moved = (flat - center) @ rot.transpose(1, 2) + center + view[:, None, 3:6]
    return moved.reshape(points.shape)


def unwarp_points(points: torch.Tensor, view: torch.Tensor, rot_center_depth: float) -> torch.Tensor:
    """Exact inverse of warp_points: p = R^T (p' - t - c) + c.

    points: (N, ..., 3) float, view frame; view: (N, 6); returns (N, ..., 3) canonical frame.
    """
    n = _check_view(points, view)
    rot = rotation_matrix(view[:, :3])
    flat = points.reshape(n, -1, 3)
    center = flat.new_tensor([0.0, 0.0, float(rot_center_depth)])
    moved = (flat - view[:, None, 3:6] - center) @ rot + center
    return moved.reshape(points.shape)

"""The pinhole camera of the photo-geometric model, and conversions between depth, points and pixels.

Conventions (shared by the whole renderer):
- camera frame: x right, y down, z forward (into the scene); depth is the z coordinate.
- pixel coordinates (x, y) = (column, row); pixel centres sit at integer coordinates, so an
  S x S image spans [0, S-1] on both axes and the principal point is ((S-1)/2, (S-1)/2).
- grid_sample grids use align_corners=True, so pixel 0 maps to -1 and pixel S-1 to +1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._checks import check_image_size, check_tensor

__all__ = ["Camera", "depth_to_points", "points_to_pixels", "pixels_to_grid", "pixel_coordinates"]


@dataclass(frozen=True)
class Camera:
    """A square perspective camera with the depth range of the photo-geometric model.

    image_size: S, the side of the square image in pixels (>= 4).
    fov_deg: full field of view in degrees, in (0, 180).
    min_depth, max_depth: the range of canonical depth, 0 < min_depth < max_depth.
    rot_center_depth: views rotate the scene about the point (0, 0, rot_center_depth).
    """

    image_size: int
    fov_deg: float = 10.0
    min_depth: float = 0.9
    max_depth: float = 1.1
    rot_center_depth: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, int) or self.image_size < 4:
            raise ValueError(f"Camera.image_size must be an int >= 4, got {self.image_size!r}")
        if not 0.0 < float(self.fov_deg) < 180.0:
            raise ValueError(f"Camera.fov_deg must be in (0, 180) degrees, got {self.fov_deg!r}")
        if not 0.0 < float(self.min_depth) < float(self.max_depth):
            raise ValueError(
                f"Camera depths must satisfy 0 < min_depth < max_depth, got min_depth={self.min_depth!r}, "
                f"max_depth={self.max_depth!r}"
            )
        if not math.isfinite(float(self.rot_center_depth)):
            raise ValueError(f"Camera.rot_center_depth must be finite, got {self.rot_center_depth!r}")

    @property
    def focal(self) -> float:
        """Focal length in pixels: (S-1)/2 / tan(fov/2)."""
        return (self.image_size - 1) / 2.0 / math.tan(math.radians(self.fov_deg) / 2.0)

    @property
    def center(self) -> float:
        """Principal point coordinate (same on both axes): (S-1)/2."""
        return (self.image_size - 1) / 2.0

    @property
    def depth_margin(self) -> float:
        """Half the canonical depth range: view depth is clamped to [min - margin, max + margin]."""
        return (self.max_depth - self.min_depth) / 2.0

    @property
    def border_depth(self) -> float:
        """Depth given to the canonical map's image border: 0.7*max_depth + 0.3*min_depth."""
        return 0.7 * self.max_depth + 0.3 * self.min_depth

    @property
    def depth_clamp(self) -> tuple[float, float]:
        """(lower, upper) clamp of rendered view depth; `upper` also marks pixels that hit no face."""
        return self.min_depth - self.depth_margin, self.max_depth + self.depth_margin

    def intrinsics(self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The (3, 3) intrinsic matrix K = [[f, 0, c], [0, f, c], [0, 0, 1]] with c = (S-1)/2."""
        f, c = self.focal, self.center
        return torch.tensor([[f, 0.0, c], [0.0, f, c], [0.0, 0.0, 1.0]], device=device, dtype=dtype)


def pixel_coordinates(
    height: int, width: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The (H, W, 2) pixel coordinates (x, y) = (column, row) of every pixel centre."""
    ys = torch.arange(height, device=device, dtype=dtype)
    xs = torch.arange(width, device=device, dtype=dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1)


def depth_to_points(depth: torch.Tensor, camera: Camera) -> torch.Tensor:
    """Back-project a depth map to 3D points in the camera frame.

    depth: (N, H, W) float, H = W = camera.image_size, positive depths (z), e.g. in [0.9, 1.1].
    Returns (N, H, W, 3): P = z * K^-1 [x, y, 1] for pixel (x=col, y=row), so P_z = depth.
    """
    n, h, w = check_tensor("depth", depth, ("N", "H", "W")).values()
    check_image_size("depth", h, w, camera.image_size)
    f, c = camera.focal, camera.center
    # K^-1 [x, y, 1] = ((x - c)/f, (y - c)/f, 1): cheaper and exact compared with a matmul.
    pix = pixel_coordinates(h, w, device=depth.device, dtype=depth.dtype)
    rays = torch.cat([(pix - c) / f, torch.ones_like(pix[..., :1])], dim=-1)  # (H, W, 3)
    return depth.unsqueeze(-1) * rays


def points_to_pixels(points: torch.Tensor, camera: Camera) -> torch.Tensor:
    """Project 3D points (camera frame) to pixel coordinates.

    points: (..., 3) float with z > 0.
    Returns (..., 2) pixel coordinates (x, y) = (f X/Z + c, f Y/Z + c); inside the image when both
    lie in [0, S-1].
    """
    check_tensor("points", points, (3,), leading=True)
    f, c = camera.focal, camera.center
    return points[..., :2] / points[..., 2:3] * f + c


def pixels_to_grid(pixels: torch.Tensor, image_size: int) -> torch.Tensor:
    """Normalise pixel coordinates to a grid_sample grid (align_corners=True).

    pixels: (..., 2) float pixel coordinates (x, y), [0, S-1] inside the image.
    Returns (..., 2) in [-1, 1] inside the image: g = p / (S-1) * 2 - 1.
    """
    check_tensor("pixels", pixels, (2,), leading=True)
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 2:
        raise ValueError(f"image_size must be an int >= 2, got {image_size!r}")
    return pixels * (2.0 / (image_size - 1)) - 1.0

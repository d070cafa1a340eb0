"""Maps as 8-bit images: depth, normals, albedo, shading, canonical texture, and grids of them.

The ground floor of the package's pictures (export, contact sheets, evaluation sheets, GAN
training snapshots all draw with these); it imports nothing of the package but ``atomic``.

The ``*_image`` functions take ONE instance (no batch axis) as a torch tensor or a numpy array and
return a uint8 numpy array, (H, W) for gray maps and (H, W, 3) for colour maps; ``write_png``
writes such an array atomically. ``depth_grey``, ``depth_to_rgb`` and ``normal_to_rgb`` are the
numpy forms the contact sheets use (a batch axis, a grey floor for the far end). Quantisation is
round-half-up, q = floor(255 * t + 0.5) for t in [0, 1] (values outside are clipped first), except
in depth_grey (see there).

Fixed, documented ranges (never per-image min/max, so images of different instances compare):
- depth: [min_depth, max_depth] of the camera by default; NEAR IS BRIGHT (gray = 255 at
  min_depth, 0 at max_depth), so gray level never increases with depth.
- normals: RGB = (n + 1) / 2 with the renderer's convention (gan2shape.render.mesh): x right,
  y down, z forward (away from the camera) and n_z > 0 for a surface facing the camera. A
  fronto-parallel plane has n = (0, 0, 1) -> (128, 128, 255); a surface turned towards the
  right of the image (its outward normal pointing to +x) has n_x < 0 -> R < 128.
- albedo / texture: [-1, 1] -> [0, 255].
- shading: [0, max_value] (default 1) -> [0, 255]; brighter shading saturates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from gan2shape.atomic import write_png

if TYPE_CHECKING:  # only the type: any object with min_depth / max_depth will do
    from gan2shape.render import Camera

__all__ = [
    "COLORMAPS",
    "depth_grey",
    "depth_image",
    "depth_to_rgb",
    "normal_image",
    "normal_to_rgb",
    "rgb_image",
    "shading_image",
    "tile_images",
    "to_uint8",
    "write_png",
]

# Anchor colours (t = 0, 0.25, 0.5, 0.75, 1) of the colour maps, linearly interpolated between.
# "viridis" follows the well-known perceptually uniform map closely enough for display.
COLORMAPS: dict[str, np.ndarray] = {
    "gray": np.array([[0, 0, 0], [64, 64, 64], [128, 128, 128], [191, 191, 191], [255, 255, 255]], np.float64),
    "viridis": np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], np.float64),
}


def _numpy(name: str, x: object, ndim: int | Sequence[int]) -> np.ndarray:
    """A float64 numpy copy of a tensor/array, checking its number of axes."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    elif isinstance(x, np.ndarray):
        x = x.astype(np.float64)
    else:
        raise ValueError(f"{name} must be a torch.Tensor or a numpy array, got {type(x).__name__}")
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if x.ndim not in allowed:
        raise ValueError(
            f"{name} must have {' or '.join(map(str, allowed))} axes (one instance, no batch axis), got shape {x.shape}"
        )
    return x


def to_uint8(t: np.ndarray) -> np.ndarray:
    """Map values t (any shape, float, nominally in [0, 1]) to uint8 floor(255 t + 0.5), clipped."""
    return np.clip(np.floor(np.asarray(t, np.float64) * 255.0 + 0.5), 0, 255).astype(np.uint8)


def depth_image(
    depth: torch.Tensor | np.ndarray,
    camera: Camera | None = None,
    depth_range: tuple[float, float] | None = None,
    colormap: str = "gray",
) -> np.ndarray:
    """A depth map as an image, near = bright.

    depth: (H, W) float in camera units. The range [lo, hi] is ``depth_range`` if given, else
    (camera.min_depth, camera.max_depth); one of the two is required. t = (hi - depth)/(hi - lo)
    clipped to [0, 1] (1 at lo, 0 at hi), then looked up in ``colormap`` (a key of COLORMAPS).
    Returns (H, W) uint8 for "gray", (H, W, 3) uint8 for other colour maps.
    """
    d = _numpy("depth", depth, 2)
    if depth_range is None:
        if camera is None:
            raise ValueError("depth_image needs a camera or an explicit depth_range=(lo, hi)")
        depth_range = (camera.min_depth, camera.max_depth)
    lo, hi = (float(v) for v in depth_range)
    if not hi > lo:
        raise ValueError(f"depth_range must be (lo, hi) with hi > lo, got {depth_range!r}")
    if colormap not in COLORMAPS:
        raise ValueError(f"unknown colormap {colormap!r}; choose one of {sorted(COLORMAPS)}")
    t = np.clip((hi - d) / (hi - lo), 0.0, 1.0)
    if colormap == "gray":
        return to_uint8(t)
    anchors = COLORMAPS[colormap]
    pos = np.linspace(0.0, 1.0, len(anchors))
    rgb = np.stack([np.interp(t, pos, anchors[:, k]) for k in range(3)], axis=-1)
    return np.clip(np.floor(rgb + 0.5), 0, 255).astype(np.uint8)


def normal_image(normals: torch.Tensor | np.ndarray) -> np.ndarray:
    """Unit normals as RGB = (n + 1) / 2.

    normals: (H, W, 3) float unit vectors in the renderer's convention (n_z > 0 facing the
    camera; see the module docstring). Returns (H, W, 3) uint8; (0, 0, 1) -> (128, 128, 255).
    """
    n = _numpy("normals", normals, 3)
    if n.shape[-1] != 3:
        raise ValueError(f"normals must have shape (H, W, 3), got {n.shape}; a batch (N, H, W, 3) needs indexing")
    return to_uint8((n + 1.0) / 2.0)


def depth_grey(depth: np.ndarray, near: float, far: float) -> np.ndarray:
    """Depth as grey levels over a given range: near = 255 down to 38 at far (a floor of 0.15 keeps
    the far end apart from a black background); depths outside [near, far] clip to the ends.

    depth: any shape, float. Returns the same shape, uint8. Unlike depth_image it rounds half to even
    in the input's precision: the heads' contact sheets and the evaluation sheets keep their pixels.
    """
    level = 0.15 + 0.85 * (far - depth) / max(far - near, 1e-6)
    return (np.clip(level, 0.15, 1.0) * 255).round().astype(np.uint8)


def depth_to_rgb(depth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Grey depth maps, near = bright, each stretched over its own foreground range (depth_grey).

    depth: (N, H, W) float; mask: (N, H, W) bool foreground. Returns (N, H, W, 3) uint8 with the
    background black.
    """
    if depth.shape != mask.shape or depth.ndim != 3:
        raise ValueError(f"depth and mask must both be (N, H, W), got {depth.shape} and {mask.shape}")
    grey = np.zeros(depth.shape, dtype=np.uint8)
    for i in range(depth.shape[0]):
        fg = mask[i]
        if fg.any():
            grey[i] = np.where(fg, depth_grey(depth[i], float(depth[i][fg].min()), float(depth[i][fg].max())), 0)
    return np.repeat(grey[..., None], 3, axis=-1)


def normal_to_rgb(normal: np.ndarray) -> np.ndarray:
    """A batch of normal maps as colours, channels first: normal_image of each.

    normal: (N, 3, H, W) float unit vectors. Returns (N, H, W, 3) uint8.
    """
    if normal.ndim != 4 or normal.shape[1] != 3:
        raise ValueError(f"normal must be (N, 3, H, W), got {normal.shape}")
    return np.stack([normal_image(n.transpose(1, 2, 0)) for n in normal])


def rgb_image(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """A colour map in [-1, 1] (albedo, canonical texture, input image) as an RGB image.

    image: (3, H, W) float, nominally in [-1, 1] (clipped). Returns (H, W, 3) uint8.
    """
    x = _numpy("image", image, 3)
    if x.shape[0] != 3:
        raise ValueError(f"image must have shape (3, H, W) (channels first), got {x.shape}")
    return to_uint8((x.transpose(1, 2, 0) + 1.0) / 2.0)


def shading_image(shading: torch.Tensor | np.ndarray, max_value: float = 1.0) -> np.ndarray:
    """A shading map (k_a + k_d max(0, <n, l>)) as a gray image.

    shading: (H, W) or (1, H, W) float >= 0. [0, max_value] maps to [0, 255]; more saturates.
    Returns (H, W) uint8.
    """
    s = _numpy("shading", shading, (2, 3))
    if s.ndim == 3:
        if s.shape[0] != 1:
            raise ValueError(f"shading must have shape (H, W) or (1, H, W), got {s.shape}")
        s = s[0]
    if not max_value > 0:
        raise ValueError(f"max_value must be > 0, got {max_value!r}")
    return to_uint8(s / float(max_value))


def tile_images(
    images: Sequence[np.ndarray],
    n_cols: int | None = None,
    pad: int = 0,
    fill: int = 255,
    scale: int = 1,
    border: int = 0,
) -> np.ndarray:
    """Tile equally sized uint8 images row-major into one RGB image.

    images: each (H, W) or (H, W, 3) uint8 (gray is repeated to RGB), upscaled ``scale`` times with
    nearest neighbour. n_cols defaults to all in one row. ``pad`` pixels between tiles and
    ``border`` pixels around the whole sheet; empty cells of the last row, the padding and the
    border take the gray value ``fill``. Returns (2*border + R*h + (R-1)*pad,
    2*border + C*w + (C-1)*pad, 3) uint8 with h, w = H*scale, W*scale and R = ceil(N / C).
    """
    if len(images) == 0:
        raise ValueError("tile_images needs at least one image")
    if scale < 1 or pad < 0 or border < 0:
        raise ValueError(f"tile_images needs scale >= 1, pad >= 0, border >= 0, got {scale}, {pad}, {border}")
    rgb = []
    for k, im in enumerate(images):
        im = np.asarray(im)
        if im.dtype != np.uint8 or im.ndim not in (2, 3) or (im.ndim == 3 and im.shape[2] != 3):
            raise ValueError(f"image {k} must be uint8 (H, W) or (H, W, 3), got {im.dtype} {im.shape}")
        im = np.repeat(im[:, :, None], 3, axis=2) if im.ndim == 2 else im
        rgb.append(im.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else im)
    h, w = rgb[0].shape[:2]
    if any(im.shape[:2] != (h, w) for im in rgb):
        raise ValueError(f"tile_images needs images of one size, got {[im.shape[:2] for im in rgb]}")
    n_cols = len(rgb) if n_cols is None else int(n_cols)
    if n_cols < 1:
        raise ValueError(f"n_cols must be >= 1, got {n_cols}")
    n_rows = -(-len(rgb) // n_cols)
    out = np.full(
        (2 * border + n_rows * h + (n_rows - 1) * pad, 2 * border + n_cols * w + (n_cols - 1) * pad, 3), fill, np.uint8
    )
    for k, im in enumerate(rgb):
        r, c = divmod(k, n_cols)
        y, x = border + r * (h + pad), border + c * (w + pad)
        out[y : y + h, x : x + w] = im
    return out

"""Contact sheets: grids of images, depth maps and normal maps, saved as PNG for a quick look."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gan2shape.export.images import tile_images as export_tiles
from PIL import Image

__all__ = ["tile_images", "depth_grey", "depth_to_rgb", "normal_to_rgb", "save_contact_sheets"]


def tile_images(images: np.ndarray, columns: int, scale: int = 1, pad: int = 2, pad_value: int = 0) -> np.ndarray:
    """Arrange images in a grid, each upscaled ``scale`` times with nearest neighbour.

    images: (N, H, W, 3) uint8. Returns (rows*(H*scale+pad)+pad, columns*(W*scale+pad)+pad, 3)
    uint8 with rows = ceil(N / columns); ``pad`` pixels of ``pad_value`` between and around tiles.
    """
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be (N, H, W, 3) uint8, got {images.shape} {images.dtype}")
    if columns < 1:
        raise ValueError(f"need columns >= 1, got {columns}")
    return export_tiles(list(images), n_cols=columns, pad=pad, fill=pad_value, scale=scale, border=pad)


def depth_grey(depth: np.ndarray, near: float, far: float) -> np.ndarray:
    """Depth as grey levels over a given range: near = 255 down to 38 at far (a floor of 0.15 keeps
    the far end apart from a black background); depths outside [near, far] clip to the ends.

    depth: any shape, float. Returns the same shape, uint8.
    """
    level = 0.15 + 0.85 * (far - depth) / max(far - near, 1e-6)
    return (np.clip(level, 0.15, 1.0) * 255).round().astype(np.uint8)


def depth_to_rgb(depth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Grey depth maps, near = bright, each stretched over its own foreground range.

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
    """Normal maps as colours: rgb = (n + 1) / 2 per component.

    normal: (N, 3, H, W) float unit vectors. Returns (N, H, W, 3) uint8.
    """
    if normal.ndim != 4 or normal.shape[1] != 3:
        raise ValueError(f"normal must be (N, 3, H, W), got {normal.shape}")
    rgb = (np.clip(normal, -1.0, 1.0) + 1.0) * 127.5
    return rgb.round().astype(np.uint8).transpose(0, 2, 3, 1)


def save_contact_sheets(
    out_dir: str | Path,
    images: np.ndarray,
    depth: np.ndarray,
    normal: np.ndarray,
    mask: np.ndarray,
    *,
    columns: int = 8,
    scale: int | None = None,
    name: str = "contact_sheet",
) -> dict[str, Path]:
    """Write ``<name>.png`` (the images) and ``<name>_depth.png`` (depth | normal per head).

    images: (N, 3, H, W) uint8 RGB; depth: (N, H, W) float; normal: (N, 3, H, W) float;
    mask: (N, H, W) bool. ``scale`` defaults to about 192 px per tile.
    Returns {'contact_sheet': path, 'contact_sheet_depth': path} (keys follow ``name``).
    """
    n, _, h, _ = images.shape
    if depth.shape != (n, h, h) or normal.shape != (n, 3, h, h) or mask.shape != (n, h, h):
        raise ValueError(
            f"contact sheet inputs disagree: images {images.shape}, depth {depth.shape}, "
            f"normal {normal.shape}, mask {mask.shape}; expected (N, H, W) / (N, 3, H, W) with N={n}"
        )
    scale = scale or max(1, 192 // h)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    photo = tile_images(images.transpose(0, 2, 3, 1), columns, scale)
    pairs = np.stack([depth_to_rgb(depth, mask), normal_to_rgb(normal)], axis=1).reshape(2 * n, h, h, 3)
    maps = tile_images(pairs, 2 * columns, scale)
    paths = {name: out_dir / f"{name}.png", f"{name}_depth": out_dir / f"{name}_depth.png"}
    Image.fromarray(photo).save(paths[name])
    Image.fromarray(maps).save(paths[f"{name}_depth"])
    return paths

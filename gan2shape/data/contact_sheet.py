"""Contact sheets: grids of images, depth maps and normal maps, saved as PNG for a quick look."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from gan2shape.imaging import depth_to_rgb, normal_to_rgb, tile_images

__all__ = ["save_contact_sheets"]


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
    photo = tile_images(list(images.transpose(0, 2, 3, 1)), n_cols=columns, pad=2, fill=0, scale=scale, border=2)
    pairs = np.stack([depth_to_rgb(depth, mask), normal_to_rgb(normal)], axis=1).reshape(2 * n, h, h, 3)
    maps = tile_images(list(pairs), n_cols=2 * columns, pad=2, fill=0, scale=scale, border=2)
    paths = {name: out_dir / f"{name}.png", f"{name}_depth": out_dir / f"{name}_depth.png"}
    Image.fromarray(photo).save(paths[name])
    Image.fromarray(maps).save(paths[f"{name}_depth"])
    return paths

"""The depth sheet of an evaluation (``depth_sheet.png`` of ``gan2shape evaluate``): each scored
head as input image | GT depth | predicted depth, worst SIDE first, so that what a mean hides (a
relief twice the truth's, stripes, a tilt) can be seen without the run folder.

Both depth maps of a head share one grey scale, the GT's range over the evaluation mask (near =
bright), after the prediction is scaled by the factor SIDE ignores (exp of the mean log ratio over
the mask): a prediction with too much relief saturates to white and black where the GT stays grey;
pixels outside the mask are dark blue.
"""

from __future__ import annotations

import numpy as np

from gan2shape.imaging import depth_grey, tile_images

__all__ = ["depth_sheet"]

_OUTSIDE = np.array([20, 20, 60], dtype=np.uint8)


def _grey(depth: np.ndarray, mask: np.ndarray, near: float, far: float) -> np.ndarray:
    """(H, W) depth -> (H, W, 3) uint8, near = 255, far = 38 (depth_grey); outside mask the _OUTSIDE colour."""
    rgb = np.repeat(depth_grey(depth, near, far)[..., None], 3, axis=-1)
    rgb[~mask] = _OUTSIDE
    return rgb


def depth_sheet(
    images: np.ndarray,
    gt_depth: np.ndarray,
    pred_depth: np.ndarray,
    mask: np.ndarray,
    side: np.ndarray,
    heads_per_row: int = 4,
    scale: int = 2,
    max_heads: int = 64,
) -> np.ndarray:
    """A grid of (image | GT depth | predicted depth) per head, sorted by SIDE, worst first.

    images: (N, 3, S, S) uint8 RGB input images; gt_depth, pred_depth: (N, S, S) float > 0 (camera
    units); mask: (N, S, S) bool evaluation mask; side: (N,) float per-head SIDE. At most
    ``max_heads`` heads (the worst ones). Returns (H, W, 3) uint8 (tiles upscaled ``scale`` times).
    """
    n = gt_depth.shape[0]
    s = gt_depth.shape[-1]
    if images.shape != (n, 3, s, s) or images.dtype != np.uint8:
        raise ValueError(f"images must be (N, 3, S, S) uint8 with N={n}, S={s}; got {images.shape} {images.dtype}")
    for name, arr in (("pred_depth", pred_depth), ("mask", mask)):
        if arr.shape != (n, s, s):
            raise ValueError(f"{name} must be (N, S, S) = {(n, s, s)}, got {arr.shape}")
    if np.shape(side) != (n,):
        raise ValueError(f"side must be (N,) = ({n},), got {np.shape(side)}")
    if heads_per_row < 1 or scale < 1 or max_heads < 1:
        raise ValueError(f"heads_per_row, scale and max_heads must be >= 1, got {heads_per_row}, {scale}, {max_heads}")
    order = np.argsort(-np.nan_to_num(np.asarray(side, dtype=np.float64), nan=np.inf), kind="stable")[:max_heads]
    tiles = []
    for i in order:
        m = mask[i].astype(bool)
        gt = gt_depth[i].astype(np.float64)
        pred = pred_depth[i].astype(np.float64)
        if m.any():
            near, far = float(gt[m].min()), float(gt[m].max())
            pred = pred * float(np.exp(np.mean(np.log(gt[m]) - np.log(np.clip(pred[m], 1e-9, None)))))
        else:
            near, far = 0.0, 1.0
        tiles += [images[i].transpose(1, 2, 0), _grey(gt, m, near, far), _grey(pred, m, near, far)]
    return tile_images(tiles, n_cols=3 * heads_per_row, pad=1, fill=255, scale=scale, border=2)

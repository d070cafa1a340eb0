"""Depth metrics of the BFM benchmark protocol (docs/METHOD.md section 5): SIDE and MAD.

Both compare a predicted depth map with the ground truth in the input view, per image, over an
evaluation mask: the GT foreground (depth < the image's max depth) eroded by one pixel, times the
predicted valid mask, also eroded by one pixel.

- SIDE (scale-invariant depth error): sqrt(mean_m(delta^2) - mean_m(delta)^2) with
  delta = log d_pred - log d_gt; the raw value is returned. Papers report it x10^-2: only the
  summary keys named ``side_x1e2_*`` carry that scaling.
- MAD (mean angle deviation): mean over the mask of the angle, in degrees, between the normals of
  the predicted and the GT depth maps (:func:`gan2shape.render.depth_to_normals`, same camera).

All per-image values are computed in float64 (inputs of any float dtype are promoted): the
metrics are differences of nearly equal numbers and float32 round-off would be visible.

Empty masks: an image whose evaluation mask has no pixel raises ValueError naming the image index
(rather than returning NaN, which would silently poison a mean over 500 images).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from gan2shape.render import Camera, depth_to_normals

__all__ = [
    "erode_mask",
    "evaluation_mask",
    "side",
    "relief_ratio",
    "mad",
    "summarize",
    "evaluate_depth",
    "ScoreAccumulator",
]


def _check_maps(name: str, x: torch.Tensor, like: torch.Tensor | None = None) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (N, H, W), got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(f"{name} must have shape (N, H, W), got {tuple(x.shape)}")
    if like is not None and x.shape != like.shape:
        raise ValueError(
            f"{name} has shape {tuple(x.shape)} but the ground truth has {tuple(like.shape)}: "
            "predictions must be aligned with the GT maps (same images, same resolution)"
        )
    if like is not None and x.device != like.device:
        raise ValueError(f"{name} is on {x.device} but the ground truth is on {like.device}: move it with .to()")


def _check_positive_depth(name: str, depth: torch.Tensor) -> None:
    if not depth.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {depth.dtype}")
    bad = ~(torch.isfinite(depth) & (depth > 0)).flatten(1).all(dim=1)
    if bool(bad.any()):
        idx = torch.nonzero(bad).flatten().tolist()
        raise ValueError(
            f"{name} must be finite and > 0 everywhere (log depth is taken); image(s) {idx[:10]}"
            f"{' ...' if len(idx) > 10 else ''} are not"
        )


def _check_mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Validate a (N, H, W) evaluation mask and return it as float64 {0, 1}-ish weights."""
    _check_maps("mask", mask, like)
    m = mask.to(torch.float64)
    if bool(((m < 0) | (m > 1) | torch.isnan(m)).any()):
        raise ValueError("mask values must lie in [0, 1] (a {0, 1} mask from evaluation_mask)")
    empty = m.flatten(1).sum(dim=1) <= 0
    if bool(empty.any()):
        idx = torch.nonzero(empty).flatten().tolist()
        raise ValueError(
            f"the evaluation mask is empty for image(s) {idx[:10]}{' ...' if len(idx) > 10 else ''} "
            "(no GT foreground pixel survives erosion, or the prediction is invalid there): "
            "check those images' ground truth / predicted valid mask, or drop them"
        )
    return m


def erode_mask(mask: torch.Tensor, pixels: int = 1) -> torch.Tensor:
    """Erode binary masks by the reference rule: 3x3 mean (stride 1, zero padding 1) > 0.99.

    A pixel survives one round only if its whole 3x3 neighbourhood is foreground; the zero padding
    also removes foreground touching the image border. Repeated ``pixels`` times.

    Args:
        mask: (N, H, W) bool/uint8/float, values in {0, 1}.
        pixels: number of erosion rounds, >= 0.

    Returns:
        (N, H, W) float32 in {0, 1}, on ``mask``'s device.
    """
    _check_maps("mask", mask)
    if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 0:
        raise ValueError(f"erode_mask: pixels must be an int >= 0, got {pixels!r}")
    m = mask.to(torch.float32).unsqueeze(1)
    for _ in range(pixels):
        m = (F.avg_pool2d(m, kernel_size=3, stride=1, padding=1) > 0.99).to(torch.float32)
    return m.squeeze(1)


def evaluation_mask(
    gt_depth: torch.Tensor,
    pred_valid: torch.Tensor | None = None,
    erode_pixels: int = 1,
) -> torch.Tensor:
    """The pixels SIDE and MAD are averaged over (docs/METHOD.md section 5).

    GT foreground = ``gt_depth < max(gt_depth)`` per image (the benchmark stores background at each
    image's max depth), eroded by ``erode_pixels``; times ``pred_valid`` eroded likewise.

    Args:
        gt_depth: (N, H, W) float GT depth, background pixels equal to the image's max.
        pred_valid: (N, H, W) bool/uint8/float {0, 1} pixels where the prediction is valid (e.g.
            rendered depth that hit the surface), or None = valid everywhere (no erosion applied,
            so no image border is removed on its account).
        erode_pixels: erosion rounds for both masks (1 in the protocol).

    Returns:
        (N, H, W) float32 in {0, 1}.
    """
    _check_maps("gt_depth", gt_depth)
    per_image_max = gt_depth.flatten(1).amax(dim=1).view(-1, 1, 1)
    mask = erode_mask(gt_depth < per_image_max, erode_pixels)
    if pred_valid is not None:
        _check_maps("pred_valid", pred_valid, gt_depth)
        mask = mask * erode_mask(pred_valid.to(torch.float32) > 0.5, erode_pixels)
    return mask


def side(pred_depth: torch.Tensor, gt_depth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scale-invariant depth error per image (raw, not x10^-2).

    SIDE = sqrt(mean_m(delta^2) - mean_m(delta)^2), delta = log pred - log gt, mean_m the mean
    over the mask. Computed in the equivalent centred form sqrt(mean_m((delta - mean_m(delta))^2)),
    which cannot go negative by round-off, so SIDE(c * d, d) is 0 to machine precision.

    Args:
        pred_depth: (N, H, W) float, > 0.
        gt_depth: (N, H, W) float, > 0.
        mask: (N, H, W) {0, 1} (or weights in [0, 1]), at least one pixel per image.

    Returns:
        (N,) float64, >= 0.
    """
    _check_maps("gt_depth", gt_depth)
    _check_maps("pred_depth", pred_depth, gt_depth)
    _check_positive_depth("pred_depth", pred_depth)
    _check_positive_depth("gt_depth", gt_depth)
    m = _check_mask(mask, gt_depth)
    return _masked_std(pred_depth.to(torch.float64).log() - gt_depth.to(torch.float64).log(), m)


def _masked_std(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Per-image standard deviation of x (N, H, W) over the mask m (N, H, W), in the centred form
    sqrt(mean_m((x - mean_m(x))^2)) (never negative by round-off). Returns (N,)."""
    count = m.flatten(1).sum(dim=1)
    mean = (x * m).flatten(1).sum(dim=1) / count
    return (((x - mean.view(-1, 1, 1)) ** 2 * m).flatten(1).sum(dim=1) / count).sqrt()


def relief_ratio(pred_depth: torch.Tensor, gt_depth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """How deep the predicted relief is against the truth, per image (a diagnostic of SIDE).

    ratio = std_m(log pred) / std_m(log gt), std_m the standard deviation over the mask: 1 when the
    relief has the true depth range, > 1 deeper, < 1 flatter; invariant to a global scale of either
    map (as SIDE). A relief scaled by k in log depth (pred = c * gt^k) gives exactly k, and then
    SIDE = |k - 1| * std_m(log gt): a wrong relief alone costs SIDE in proportion.

    Args: as :func:`side` (maps (N, H, W) > 0, mask (N, H, W) with at least one pixel per image).
    Returns: (N,) float64, >= 0 (inf where the GT is flat over the mask).
    """
    _check_maps("gt_depth", gt_depth)
    _check_maps("pred_depth", pred_depth, gt_depth)
    _check_positive_depth("pred_depth", pred_depth)
    _check_positive_depth("gt_depth", gt_depth)
    m = _check_mask(mask, gt_depth)
    return _masked_std(pred_depth.to(torch.float64).log(), m) / _masked_std(gt_depth.to(torch.float64).log(), m)


def mad(pred_depth: torch.Tensor, gt_depth: torch.Tensor, mask: torch.Tensor, camera: Camera) -> torch.Tensor:
    """Mean angle deviation (degrees) between predicted and GT normals, per image.

    Normals come from :func:`gan2shape.render.depth_to_normals` with ``camera`` for both maps. The
    angle is atan2(|n1 x n2|, n1 . n2): equal to acos of the clamped cosine, but accurate for small
    angles, where acos loses precision (acos(1 - 1e-7) is already 0.03 degrees).

    Args:
        pred_depth: (N, S, S) float, > 0, S = camera.image_size.
        gt_depth: (N, S, S) float, > 0.
        mask: (N, S, S) {0, 1} (or weights in [0, 1]), at least one pixel per image.
        camera: the camera both depth maps are seen through.

    Returns:
        (N,) float64 degrees, in [0, 180].
    """
    _check_maps("gt_depth", gt_depth)
    _check_maps("pred_depth", pred_depth, gt_depth)
    _check_positive_depth("pred_depth", pred_depth)
    _check_positive_depth("gt_depth", gt_depth)
    m = _check_mask(mask, gt_depth)
    n_pred = depth_to_normals(pred_depth.to(torch.float64), camera).to(torch.float64)
    n_gt = depth_to_normals(gt_depth.to(torch.float64), camera).to(torch.float64)
    cross = torch.linalg.cross(n_pred, n_gt, dim=-1).norm(dim=-1)
    dot = (n_pred * n_gt).sum(dim=-1)
    angle = torch.rad2deg(torch.atan2(cross, dot))
    return (angle * m).flatten(1).sum(dim=1) / m.flatten(1).sum(dim=1)


def _to_numpy(values: torch.Tensor | np.ndarray | Sequence[float]) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().to(torch.float64).numpy()
    return np.asarray(values, dtype=np.float64).reshape(-1)


def summarize(side_values: torch.Tensor | np.ndarray, mad_values: torch.Tensor | np.ndarray) -> dict[str, float]:
    """Mean and standard deviation over images, as the tables report them.

    Args:
        side_values: (N,) raw SIDE per image.
        mad_values: (N,) MAD per image, degrees.

    Returns:
        {'n', 'side_x1e2_mean', 'side_x1e2_std', 'mad_mean', 'mad_std'}: SIDE scaled by 100 (the
        x10^-2 of the tables), MAD in degrees. The std is the sample std (ddof=1), as unsup3d's
        ``save_scores`` (torch ``std``) reports it; NaN when N < 2.
    """
    s = _to_numpy(side_values)
    a = _to_numpy(mad_values)
    if s.shape != a.shape or s.size == 0:
        raise ValueError(f"summarize: need equal-length, non-empty SIDE and MAD arrays, got {s.shape} and {a.shape}")
    n = int(s.size)

    def _std(x: np.ndarray) -> float:
        return float(np.std(x, ddof=1)) if n >= 2 else math.nan

    return {
        "n": n,
        "side_x1e2_mean": float(np.mean(s)) * 100.0,
        "side_x1e2_std": _std(s) * 100.0,
        "mad_mean": float(np.mean(a)),
        "mad_std": _std(a),
    }


def evaluate_depth(
    pred_depth: torch.Tensor,
    gt_depth: torch.Tensor,
    camera: Camera,
    pred_valid: torch.Tensor | None = None,
    erode_pixels: int = 1,
) -> dict[str, object]:
    """SIDE and MAD of a batch of predictions, per image and summarised.

    Args:
        pred_depth: (N, S, S) float, > 0, in the input view (aligned with the GT).
        gt_depth: (N, S, S) float, > 0, background at each image's max depth.
        camera: the camera of the input view (normals for MAD).
        pred_valid: optional (N, S, S) {0, 1} valid-prediction mask (see :func:`evaluation_mask`).
        erode_pixels: erosion rounds of the evaluation mask (1 in the protocol).

    Returns:
        {'side': (N,) float64 ndarray, raw SIDE per image; 'mad': (N,) float64 ndarray, degrees;
        plus the :func:`summarize` keys 'n', 'side_x1e2_mean', 'side_x1e2_std' (SIDE x 100, i.e. in
        units of 10^-2), 'mad_mean', 'mad_std' (degrees)}.

    Raises:
        ValueError: mismatched shapes, non-positive depths, or an image with an empty mask (named).
    """
    _check_maps("gt_depth", gt_depth)
    _check_maps("pred_depth", pred_depth, gt_depth)
    mask = evaluation_mask(gt_depth, pred_valid, erode_pixels)
    side_values = side(pred_depth, gt_depth, mask).cpu().numpy()
    mad_values = mad(pred_depth, gt_depth, mask, camera).cpu().numpy()
    return {"side": side_values, "mad": mad_values, **summarize(side_values, mad_values)}


class ScoreAccumulator:
    """Collects per-image SIDE and MAD over batches (for test sets streamed from disk).

    Usage::

        acc = ScoreAccumulator()
        for ids, pred, gt in batches:
            acc.add(ids, pred, gt, camera)
        row = acc.result()
    """

    def __init__(self) -> None:
        self._ids: list[str] = []
        self._side: list[np.ndarray] = []
        self._mad: list[np.ndarray] = []
        self._relief: list[np.ndarray] = []

    def add(
        self,
        ids: Sequence[str],
        pred_depth: torch.Tensor,
        gt_depth: torch.Tensor,
        camera: Camera,
        pred_valid: torch.Tensor | None = None,
        erode_pixels: int = 1,
    ) -> torch.Tensor:
        """Score one batch: ``ids`` (B,) names, maps (B, S, S) as in :func:`evaluate_depth`.

        Returns the evaluation mask the batch was scored over, (B, S, S) float32 {0, 1}. Raises
        ValueError naming the ids of images with an empty evaluation mask.
        """
        _check_maps("gt_depth", gt_depth)
        _check_maps("pred_depth", pred_depth, gt_depth)
        if len(ids) != gt_depth.shape[0]:
            raise ValueError(f"got {len(ids)} ids for a batch of {gt_depth.shape[0]} depth maps")
        mask = evaluation_mask(gt_depth, pred_valid, erode_pixels)
        empty = mask.flatten(1).sum(dim=1) <= 0
        if bool(empty.any()):
            bad = [str(ids[i]) for i in torch.nonzero(empty).flatten().tolist()]
            raise ValueError(
                f"the evaluation mask is empty for image id(s) {bad[:10]}: no GT foreground pixel "
                "survives erosion (or the prediction is invalid there); check those images"
            )
        self._ids.extend(str(i) for i in ids)
        self._side.append(side(pred_depth, gt_depth, mask).cpu().numpy())
        self._mad.append(mad(pred_depth, gt_depth, mask, camera).cpu().numpy())
        self._relief.append(relief_ratio(pred_depth, gt_depth, mask).cpu().numpy())
        return mask

    def result(self) -> dict[str, object]:
        """{'ids': list, 'side': (N,) ndarray (raw), 'mad': (N,) ndarray (degrees), 'relief': (N,)
        ndarray (``relief_ratio``), + summarize keys}."""
        if not self._ids:
            raise ValueError("ScoreAccumulator.result: no images were added")
        side_values = np.concatenate(self._side)
        mad_values = np.concatenate(self._mad)
        return {
            "ids": list(self._ids),
            "side": side_values,
            "mad": mad_values,
            "relief": np.concatenate(self._relief),
            **summarize(side_values, mad_values),
        }

"""The ellipsoid shape prior (METHOD.md section 3, stage 0).

Before stage 1 the depth net is trained to output a coarse convex "cap" over the object: the
background at depth ``far`` and, over an ellipse inscribed in the object's bounding box, a surface
rising towards the camera to depth ``near`` at the box centre.

Box convention (used by every function here): a box is ``[x0, y0, x1, y1]`` in pixel-centre
coordinates, x = column index, y = row index, both ends inclusive. A mask whose foreground spans
columns 10..20 has x0 = 10, x1 = 20 and width x1 - x0 = 10; the inscribed ellipse passes through
the centres of the extreme pixels (as in the reference code, whose box comes from the min/max
foreground pixel indices).

Shape of the cap (reference: XingangPan/GAN2Shape ``model.py``, ``init_ellipsoid``). Let
``rho`` be the normalised elliptic radius of a pixel, ``rho^2 = ((x - cx) / ax)^2 + ((y - cy) / ay)^2``
with centre (cx, cy) and semi-axes (ax, ay) = half the box width and height. Inside the ellipse
(rho <= 1) the depth is a section of a sphere of radius ``radius`` (in depth units, 0.4 in the
reference), scaled so that it rises by exactly ``far - near``::

    t     = sqrt(radius^2 - (radius - (far - near))^2)      # half-chord of the cap's base
    depth = near + radius - sqrt(radius^2 - (rho * t)^2)     # near at rho = 0, far at rho = 1

and ``far`` outside. The depth is continuous at the rim and increases monotonically with rho.

Deviations from the reference, on purpose:
- The reference stretches rows about the image centre (row h/2) but measures the distance to the
  box centre, so a box that is not vertically centred and not square gets an ellipse whose centre
  is shifted off the box centre (by ``(ratio - 1) * (cy - h/2)`` rows). We centre the ellipse on the
  box centre, which is what the construction evidently intends.
- The reference centres the image at h/2 (a half-pixel off the pixel-centre convention); boxes here
  are in pixel-centre coordinates throughout, so a centred box is exactly mirror-symmetric.
- Category-specific box adjustments other than raising the top (celeba, car, church rules) are not
  implemented; ``box_from_mask`` implements the synthetic-face rule (top raised by 1/6 of the
  height), and ``raise_top_frac=0`` gives the plain bounding box.
"""

from __future__ import annotations

import math

import torch

__all__ = ["box_from_mask", "centered_box", "ellipsoid_prior"]


def box_from_mask(mask: torch.Tensor, raise_top_frac: float = 1.0 / 6.0, threshold: float = 0.5) -> torch.Tensor:
    """The bounding box of each mask's foreground, its top raised by a fraction of its height.

    Args:
        mask: (N, H, W) float/bool/uint8, foreground where ``mask > threshold`` (a {0, 1} mask or a
            soft mask in [0, 1]).
        raise_top_frac: y0 is moved up by ``raise_top_frac * (y1 - y0)`` (1/6 for synthetic faces,
            where the parsing mask misses the top of the head); >= 0. The result is clipped to the
            image, y0 >= 0.
        threshold: foreground threshold.

    Returns:
        (N, 4) float32 boxes ``[x0, y0, x1, y1]`` in pixel-centre coordinates (module docstring),
        values in [0, W-1] x [0, H-1], on ``mask``'s device.

    Raises:
        ValueError: wrong shape, negative ``raise_top_frac``, or an image with an empty foreground
            (the message names its index).
    """
    if mask.dim() != 3:
        raise ValueError(f"box_from_mask: mask must be (N, H, W), got shape {tuple(mask.shape)}")
    if not raise_top_frac >= 0.0:
        raise ValueError(f"box_from_mask: raise_top_frac must be >= 0, got {raise_top_frac}")
    n, h, w = mask.shape
    fg = mask.float() > threshold
    rows = fg.any(dim=2)  # (N, H): which rows hold foreground
    cols = fg.any(dim=1)  # (N, W)
    empty = ~rows.any(dim=1)
    if bool(empty.any()):
        bad = torch.nonzero(empty).flatten().tolist()
        raise ValueError(
            f"box_from_mask: image(s) {bad} have no foreground pixel (mask > {threshold}); "
            "a box cannot be placed: check the masks or use centered_box"
        )
    row_idx = torch.arange(h, device=mask.device, dtype=torch.float32)
    col_idx = torch.arange(w, device=mask.device, dtype=torch.float32)
    inf = torch.tensor(float("inf"), device=mask.device)
    y0 = torch.where(rows, row_idx, inf).amin(dim=1)
    y1 = torch.where(rows, row_idx, -inf).amax(dim=1)
    x0 = torch.where(cols, col_idx, inf).amin(dim=1)
    x1 = torch.where(cols, col_idx, -inf).amax(dim=1)
    y0 = (y0 - raise_top_frac * (y1 - y0)).clamp(min=0.0)
    return torch.stack([x0, y0, x1, y1], dim=1)


def centered_box(
    image_size: int,
    width_frac: float,
    height_frac: float,
    offset: tuple[float, float] = (0.0, 0.0),
) -> torch.Tensor:
    """A box centred in the image (optionally shifted), sized as fractions of the image.

    Args:
        image_size: S, the square image's side in pixels (>= 2).
        width_frac, height_frac: box width and height as fractions of the image span S-1, in (0, 1].
        offset: (dx, dy) shift of the centre as fractions of S-1 (positive = right / down).

    Returns:
        (4,) float32 ``[x0, y0, x1, y1]`` in pixel-centre coordinates; not clipped (a shifted box
        may reach outside the image; ``ellipsoid_prior`` handles that).
    """
    if image_size < 2:
        raise ValueError(f"centered_box: image_size must be >= 2, got {image_size}")
    for name, value in (("width_frac", width_frac), ("height_frac", height_frac)):
        if not 0.0 < value <= 1.0:
            raise ValueError(f"centered_box: {name} must be in (0, 1], got {value}")
    span = float(image_size - 1)
    cx = span / 2.0 + offset[0] * span
    cy = span / 2.0 + offset[1] * span
    hw = width_frac * span / 2.0
    hh = height_frac * span / 2.0
    return torch.tensor([cx - hw, cy - hh, cx + hw, cy + hh], dtype=torch.float32)


def ellipsoid_prior(
    boxes: torch.Tensor,
    image_size: int,
    near: float = 0.91,
    far: float = 1.02,
    radius: float = 0.4,
) -> torch.Tensor:
    """The ellipsoid-cap prior depth over each box (module docstring gives the formula).

    Args:
        boxes: (N, 4) or (4,) float ``[x0, y0, x1, y1]`` in pixel-centre coordinates, x1 > x0 and
            y1 > y0 (any finite values; parts outside the image are simply not drawn).
        image_size: S, the output side in pixels.
        near: depth at the box centre (the point closest to the camera), > 0.
        far: background depth, > near.
        radius: radius of the sphere the cap is cut from, in depth units; >= far - near. Larger
            values give a flatter, more cone-like profile; radius = far - near a hemisphere profile.

    Returns:
        (N, S, S) float32 depth, values in [near, far]; ``far`` outside the inscribed ellipse,
        ``near`` at the box centre when it falls on a pixel centre. Canonical (frontal) frame.
    """
    if boxes.dim() == 1:
        boxes = boxes.unsqueeze(0)
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"ellipsoid_prior: boxes must be (N, 4) [x0, y0, x1, y1], got shape {tuple(boxes.shape)}")
    if image_size < 2:
        raise ValueError(f"ellipsoid_prior: image_size must be >= 2, got {image_size}")
    if not 0.0 < near < far:
        raise ValueError(f"ellipsoid_prior: need 0 < near < far, got near={near}, far={far}")
    height = far - near
    if not radius >= height:
        raise ValueError(
            f"ellipsoid_prior: radius ({radius}) must be >= far - near ({height}) so that the cap "
            "rises by exactly far - near"
        )
    b = boxes.detach().to(torch.float64)
    if not bool(torch.isfinite(b).all()):
        raise ValueError("ellipsoid_prior: boxes contain non-finite values")
    degenerate = (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])
    if bool(degenerate.any()):
        bad = torch.nonzero(degenerate).flatten().tolist()
        raise ValueError(
            f"ellipsoid_prior: box(es) {bad} have zero or negative width/height (need x1 > x0, y1 > y0)"
        )
    cx = ((b[:, 0] + b[:, 2]) / 2).view(-1, 1, 1)
    cy = ((b[:, 1] + b[:, 3]) / 2).view(-1, 1, 1)
    ax = ((b[:, 2] - b[:, 0]) / 2).view(-1, 1, 1)
    ay = ((b[:, 3] - b[:, 1]) / 2).view(-1, 1, 1)
    coords = torch.arange(image_size, dtype=torch.float64, device=boxes.device)
    x = coords.view(1, 1, -1)
    y = coords.view(1, -1, 1)
    rho2 = ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2  # (N, S, S)
    half_chord = math.sqrt(radius**2 - (radius - height) ** 2)
    chord2 = rho2.clamp(max=1.0) * half_chord**2
    cap = near + radius - torch.sqrt(radius**2 - chord2)
    depth = torch.where(rho2 <= 1.0, cap, torch.full_like(cap, far))
    return depth.to(torch.float32)

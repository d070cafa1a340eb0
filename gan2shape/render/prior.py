"""The ellipsoid shape prior (docs/METHOD.md section 3, stage 0).

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

Prior variants (paper Table 2: the prior ablation on synthetic faces): ``prior_variant`` builds the
ellipsoid and four perturbed priors -- asymmetric, shifted, weaker and flat -- to test how much the
method depends on the prior. The paper names the variants and shows them in a figure but gives no
formulas, and the public reference code holds only the ellipsoid; the parameterisations below
(and their defaults) are therefore ours, each chosen to have the variant's defining property:
asymmetric = not mirror-symmetric, shifted = the apex moved, weaker = a smaller depth range,
flat = a plane (no shape cue at all). ``prior_boxes`` gives the boxes from a configurable source.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

__all__ = [
    "PRIOR_VARIANTS",
    "BOX_SOURCES",
    "box_from_mask",
    "centered_box",
    "ellipsoid_prior",
    "prior_boxes",
    "prior_variant",
]

PriorVariant = Literal["ellipsoid", "asymmetric", "shifted", "weaker", "flat"]
PRIOR_VARIANTS: tuple[str, ...] = ("ellipsoid", "asymmetric", "shifted", "weaker", "flat")
BoxSource = Literal["centered", "mask"]
BOX_SOURCES: tuple[str, ...] = ("centered", "mask")


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
    return _cap_prior(boxes, image_size, near, far, radius, who="ellipsoid_prior")


def _check_boxes(boxes: torch.Tensor, who: str) -> torch.Tensor:
    """(N, 4) or (4,) boxes -> (N, 4) float64, validated (finite, positive width and height)."""
    if boxes.dim() == 1:
        boxes = boxes.unsqueeze(0)
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{who}: boxes must be (N, 4) [x0, y0, x1, y1], got shape {tuple(boxes.shape)}")
    b = boxes.detach().to(torch.float64)
    if not bool(torch.isfinite(b).all()):
        raise ValueError(f"{who}: boxes contain non-finite values")
    degenerate = (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])
    if bool(degenerate.any()):
        bad = torch.nonzero(degenerate).flatten().tolist()
        raise ValueError(f"{who}: box(es) {bad} have zero or negative width/height (need x1 > x0, y1 > y0)")
    return b


def _cap_prior(
    boxes: torch.Tensor,
    image_size: int,
    near: float,
    far: float,
    radius: float,
    *,
    who: str,
    asymmetry: float = 0.0,
    shift_px: tuple[float, float] = (0.0, 0.0),
) -> torch.Tensor:
    """The cap of the module docstring, optionally with its apex moved sideways inside the box
    (``asymmetry``, see ``prior_variant``) and the whole box moved by ``shift_px`` = (dx, dy)
    pixels. With the defaults this is exactly the ellipsoid prior. Returns (N, S, S) float32."""
    if image_size < 2:
        raise ValueError(f"{who}: image_size must be >= 2, got {image_size}")
    if not 0.0 < near < far:
        raise ValueError(f"{who}: need 0 < near < far, got near={near}, far={far}")
    height = far - near
    if not radius >= height:
        raise ValueError(
            f"{who}: radius ({radius}) must be >= far - near ({height}) so that the cap rises by exactly far - near"
        )
    b = _check_boxes(boxes, who)
    cx = ((b[:, 0] + b[:, 2]) / 2 + shift_px[0]).view(-1, 1, 1)
    cy = ((b[:, 1] + b[:, 3]) / 2 + shift_px[1]).view(-1, 1, 1)
    ax = ((b[:, 2] - b[:, 0]) / 2).view(-1, 1, 1)
    ay = ((b[:, 3] - b[:, 1]) / 2).view(-1, 1, 1)
    coords = torch.arange(image_size, dtype=torch.float64, device=boxes.device)
    x = coords.view(1, 1, -1)
    y = coords.view(1, -1, 1)
    # The apex moves to cx + a*ax; the half-ellipse on each side of it is stretched so that the
    # footprint still spans exactly [x0, x1] (a = 0: the plain ellipse).
    apex_x = cx + asymmetry * ax
    semi_x = torch.where(x < apex_x, ax * (1.0 + asymmetry), ax * (1.0 - asymmetry))
    rho2 = ((x - apex_x) / semi_x) ** 2 + ((y - cy) / ay) ** 2  # (N, S, S)
    half_chord = math.sqrt(radius**2 - (radius - height) ** 2)
    chord2 = rho2.clamp(max=1.0) * half_chord**2
    cap = near + radius - torch.sqrt(radius**2 - chord2)
    depth = torch.where(rho2 <= 1.0, cap, torch.full_like(cap, far))
    return depth.to(torch.float32)


# Parameters each variant accepts, with our defaults (module docstring: the paper gives none).
_VARIANT_DEFAULTS: dict[str, dict[str, object]] = {
    "ellipsoid": {"radius": 0.4},
    "asymmetric": {"radius": 0.4, "asymmetry": 0.3},
    "shifted": {"radius": 0.4, "shift_frac": (0.1, 0.0)},
    "weaker": {"radius": 0.4, "strength": 0.5},
    "flat": {"level": None},
}


def prior_variant(
    name: PriorVariant,
    boxes: torch.Tensor,
    image_size: int,
    near: float = 0.91,
    far: float = 1.02,
    **variant_params: object,
) -> torch.Tensor:
    """One of the shape priors of the paper's Table 2 (prior ablation), over each box.

    Variants (parameters in brackets, with our defaults; see the module docstring for why the
    parameterisations are ours):

    - ``ellipsoid`` [radius=0.4]: ``ellipsoid_prior`` (the method's default prior).
    - ``asymmetric`` [radius=0.4, asymmetry=0.3]: the cap's apex (depth ``near``) sits at
      ``cx + asymmetry * ax`` instead of the box centre cx (ax = half the box width); the half-caps
      left and right of it are stretched to semi-axes ``ax * (1 + asymmetry)`` and
      ``ax * (1 - asymmetry)``, so the footprint still spans the box but the surface is not
      mirror-symmetric (steeper on one side). asymmetry in (-1, 1), > 0 moves the apex right.
    - ``shifted`` [radius=0.4, shift_frac=(0.1, 0.0)]: the ellipsoid over the box moved by
      ``shift_frac * (S - 1)`` pixels (dx right, dy down): a prior that is misplaced relative to the
      object. Each fraction in (-1, 1).
    - ``weaker`` [radius=0.4, strength=0.5]: the ellipsoid rising only to
      ``far - strength * (far - near)``: a smaller depth range, i.e. a weaker shape cue.
      strength in (0, 1].
    - ``flat`` [level=None]: a frontal plane at depth ``level`` (None = ``far``): no shape cue at
      all (the paper's failure case). ``near`` is unused. Note the depth net subtracts its spatial
      mean before the tanh, so any constant target is reached as the mid depth (min+max)/2.

    Args:
        name: the variant, one of ``PRIOR_VARIANTS``.
        boxes: (N, 4) or (4,) float ``[x0, y0, x1, y1]`` pixel-centre boxes (module docstring),
            x1 > x0, y1 > y0; used for N only by ``flat``.
        image_size: S, the output side in pixels (>= 2).
        near, far: apex and background depth of the ellipsoid, 0 < near < far.
        **variant_params: the variant's parameters listed above; any other name is an error.

    Returns:
        (N, S, S) float32 depth in the canonical frame, values in [near, far] (``flat``: all
        ``level``).

    Raises:
        ValueError: unknown variant or parameter, or a parameter out of its range.
    """
    if name not in _VARIANT_DEFAULTS:
        raise ValueError(f"prior_variant: unknown variant {name!r}; choose one of {PRIOR_VARIANTS}")
    allowed = _VARIANT_DEFAULTS[name]
    unknown = sorted(set(variant_params) - set(allowed))
    if unknown:
        raise ValueError(f"prior_variant: variant {name!r} takes parameters {sorted(allowed)}, got unknown {unknown}")
    p = {**allowed, **variant_params}
    who = f"prior_variant({name!r})"
    if name == "flat":
        b = _check_boxes(boxes, who)
        if image_size < 2:
            raise ValueError(f"{who}: image_size must be >= 2, got {image_size}")
        level = far if p["level"] is None else float(p["level"])  # type: ignore[arg-type]
        if not level > 0.0:
            raise ValueError(f"{who}: level must be > 0, got {level}")
        return torch.full((b.shape[0], image_size, image_size), level, dtype=torch.float32, device=boxes.device)
    radius = float(p["radius"])  # type: ignore[arg-type]
    if name == "ellipsoid":
        return _cap_prior(boxes, image_size, near, far, radius, who=who)
    if name == "asymmetric":
        asym = float(p["asymmetry"])  # type: ignore[arg-type]
        if not -1.0 < asym < 1.0:
            raise ValueError(f"{who}: asymmetry must be in (-1, 1), got {asym}")
        return _cap_prior(boxes, image_size, near, far, radius, who=who, asymmetry=asym)
    if name == "shifted":
        shift = tuple(float(v) for v in p["shift_frac"])  # type: ignore[union-attr]
        if len(shift) != 2 or not all(-1.0 < v < 1.0 for v in shift):
            raise ValueError(f"{who}: shift_frac must be (dx, dy) with each in (-1, 1), got {p['shift_frac']}")
        span = float(image_size - 1)
        return _cap_prior(boxes, image_size, near, far, radius, who=who, shift_px=(shift[0] * span, shift[1] * span))
    # weaker
    strength = float(p["strength"])  # type: ignore[arg-type]
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"{who}: strength must be in (0, 1], got {strength}")
    if not 0.0 < near < far:
        raise ValueError(f"{who}: need 0 < near < far, got near={near}, far={far}")
    return _cap_prior(boxes, image_size, far - strength * (far - near), far, radius, who=who)


def prior_boxes(
    source: BoxSource,
    image_size: int,
    n: int,
    *,
    masks: torch.Tensor | None = None,
    width_frac: float = 0.6,
    height_frac: float = 0.75,
    raise_top_frac: float = 1.0 / 6.0,
) -> torch.Tensor:
    """The boxes the prior is placed over, from a configurable source.

    Args:
        source: ``'centered'``: the same centred box for every image, ``width_frac`` x
            ``height_frac`` of the image span (``centered_box``); ``'mask'``: each mask's bounding
            box with its top raised by ``raise_top_frac`` of its height (``box_from_mask``; the
            reference code's rule for synthetic faces).
        image_size: S, the image side in pixels (>= 2).
        n: number of images N (>= 1).
        masks: (N, S, S) float/bool foreground masks; required for ``'mask'``, must be None for
            ``'centered'`` (so a forgotten source switch does not pass silently).
        width_frac, height_frac: in (0, 1]; used by ``'centered'`` only.
        raise_top_frac: >= 0; used by ``'mask'`` only.

    Returns:
        (N, 4) float32 ``[x0, y0, x1, y1]`` pixel-centre boxes (on ``masks``' device for 'mask').

    Raises:
        ValueError: unknown source, 'mask' without masks or with masks of the wrong shape,
            masks given with 'centered', n < 1, or an empty mask.
    """
    if source not in BOX_SOURCES:
        raise ValueError(f"prior_boxes: unknown source {source!r}; choose one of {BOX_SOURCES}")
    if n < 1:
        raise ValueError(f"prior_boxes: n must be >= 1, got {n}")
    if image_size < 2:
        raise ValueError(f"prior_boxes: image_size must be >= 2, got {image_size}")
    if source == "centered":
        if masks is not None:
            raise ValueError("prior_boxes: masks were given but source is 'centered'; use source='mask' to use them")
        return centered_box(image_size, width_frac, height_frac).unsqueeze(0).expand(n, 4).clone()
    if masks is None:
        raise ValueError("prior_boxes: source 'mask' needs masks (N, S, S); pass masks=... or use source='centered'")
    if masks.dim() != 3 or masks.shape[0] != n or masks.shape[1:] != (image_size, image_size):
        raise ValueError(
            f"prior_boxes: masks must be ({n}, {image_size}, {image_size}) for n={n}, "
            f"image_size={image_size}; got {tuple(masks.shape)}"
        )
    return box_from_mask(masks, raise_top_frac=raise_top_frac)

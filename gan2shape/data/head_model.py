"""A procedural 3D head: a named identity vector -> canonical depth map, head mask and albedo.

Everything is a pure, batched torch function of per-head parameter tensors, evaluated on the
pixel grid of the canonical (frontal) camera:

- ``u, v``: normalised image coordinates of pixel centres, -1 at the first and +1 at the last
  pixel centre (the camera's ``grid_sample`` convention; x right, v down), so a point at depth z
  seen at (u, v) sits at X = u * tan(fov/2) * z, Y = v * tan(fov/2) * z.
- head coordinates ``x = u / W``, ``y = (v - cy) / H``: the head's half-height H (in image
  half-heights), half-width W = head_width * H, crown at y = -1, chin at y = +1.

Depth is in camera units (larger = farther). Relief is measured in L, the head's half-width in
camera units (W * tan(fov/2), about 0.045 for fov 10), so proportions stay human: the silhouette
edge sits at ``EDGE_DEPTH`` (1.03), the face plane about one L in front of it, the nose tip
0.3-0.45 L further (depth ~0.935-0.975 for fov 10), and the mean depth of a head is ~1.0, the
rotation centre, inside the method's [0.9, 1.1] range. (Twice that relief, front 0.9 / edge 1.05,
made heads turned by 40-60 degrees look like long-nosed cones with spiky outlines.)
Depth features (brow ridge, eye sockets, nose, cheeks, lips, chin) and albedo features (brows,
eyes, lips, nostrils, hair) are placed from one shared layout, so the eyes sit in their sockets
and the lips on the mouth bump.

A depth map holds only the front of a head: turned far (yaw near 60 degrees) a head shows no
back of the skull, and the steep band at its outline stretches the texture there.

Left/right symmetry is exact when every ``asym_*`` parameter is 0 and the noise has no
antisymmetric part: paired features are summed as (left + right) in one addition and every
symmetric term is an even function of ``u`` evaluated on an exactly antisymmetric grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "EDGE_DEPTH",
    "ParamSpec",
    "SHAPE_PARAMS",
    "ALBEDO_PARAMS",
    "SHAPE_PARAM_NAMES",
    "ALBEDO_PARAM_NAMES",
    "NOISE_SYM_TERMS",
    "NOISE_ANTI_TERMS",
    "params_from_unit",
    "image_grid",
    "canonical_shape",
    "canonical_albedo",
    "smooth_background",
]

EDGE_DEPTH = 1.03  # depth of the head's silhouette edge (camera units)
_PROFILE_POWER = 2.3  # the head's depth profile (1 - r^power)^gamma: a flat face, steep sides ...
_PROFILE_GAMMA = 1.0  # ... that stay finite at the outline (no fins when the head turns)


@dataclass(frozen=True)
class ParamSpec:
    """One named head parameter, uniform in [low, high]; an ``asymmetric`` one is then multiplied
    by the benchmark's ``asymmetry`` (so it is exactly 0 for asymmetry 0)."""

    name: str
    low: float
    high: float
    doc: str
    asymmetric: bool = False


# Units: "H" = head half-heights, "W" = head half-widths (both in the image), "L" = the head's
# half-width in camera units (W * tan(fov/2)): depth relief scales with the head's true size, so
# proportions stay human (a real face plane is about one half-width in front of the ears).
SHAPE_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec(
        "head_height",
        0.58,
        0.70,
        "head half-height in image half-heights (the head spans this fraction of the image height)",
    ),
    ParamSpec("head_width", 0.72, 0.86, "head half-width / half-height"),
    ParamSpec("head_depth", 0.9, 1.25, "face plane in front of the silhouette edge (L)"),
    ParamSpec("jaw_width", 0.0, 1.0, "0 = narrow, pointed jaw; 1 = wide, square jaw"),
    ParamSpec("brow_height", -0.04, 0.04, "vertical offset of brows and brow ridge (H, + = lower)"),
    ParamSpec("brow_size", 0.05, 0.15, "brow ridge protrusion (L)"),
    ParamSpec("eye_depth", 0.12, 0.24, "eye socket depth (L)"),
    ParamSpec("eye_spacing", 0.32, 0.40, "eye centre to the midline (W)"),
    ParamSpec("eye_height", -0.10, 0.0, "eye line (y, H; 0 = head centre)"),
    ParamSpec("eye_size", 0.15, 0.20, "eye half-width (W)"),
    ParamSpec("nose_length", 0.30, 0.42, "eye line to nose tip (H)"),
    ParamSpec("nose_width", 0.10, 0.15, "half-width of the nose base (W)"),
    ParamSpec("nose_protrusion", 0.3, 0.45, "nose tip in front of the face plane (L)"),
    ParamSpec("nose_tip", 0.0, 1.0, "size of the bulb at the nose tip"),
    ParamSpec("cheek_fullness", 0.0, 0.12, "cheek protrusion (L)"),
    ParamSpec("face_convexity", 0.12, 0.3, "midline (forehead, mouth, chin) in front of the cheeks (L)"),
    ParamSpec("lip_size", 0.22, 0.32, "mouth half-width (W)"),
    ParamSpec("lip_protrusion", 0.04, 0.11, "lip protrusion (L)"),
    ParamSpec("chin_size", 0.14, 0.24, "chin radius (H)"),
    ParamSpec("chin_protrusion", 0.0, 0.14, "chin protrusion (L)"),
    ParamSpec("neck_width", 0.42, 0.55, "neck half-width (W)"),
    ParamSpec("ear_size", 0.8, 1.2, "ear size (relative)"),
    ParamSpec("asym_eye_dx", -1.0, 1.0, "one eye farther from the midline than the other", True),
    ParamSpec("asym_eye_dy", -1.0, 1.0, "one eye higher than the other", True),
    ParamSpec("asym_brow_dy", -1.0, 1.0, "one brow higher than the other", True),
    ParamSpec("asym_nose_shift", -1.0, 1.0, "nose tip shifted sideways", True),
    ParamSpec("asym_mouth_tilt", -1.0, 1.0, "mouth tilted", True),
    ParamSpec("asym_jaw", -1.0, 1.0, "one side of the jaw wider", True),
    ParamSpec("asym_twist", -1.0, 1.0, "one side of the face nearer the camera", True),
)

ALBEDO_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("skin_tone", 0.0, 1.0, "0 = very light, 1 = very dark skin"),
    ParamSpec("skin_redness", -1.0, 1.0, "skin hue: - = yellower, + = redder"),
    ParamSpec("skin_variation", 0.3, 1.0, "amplitude of the low-frequency skin variation"),
    ParamSpec("blush", 0.0, 1.0, "redness of the cheeks"),
    ParamSpec("lip_tint", 0.0, 1.0, "0 = lips close to skin, 1 = dark red lips"),
    ParamSpec("iris_hue", 0.0, 1.0, "iris colour: dark brown, brown, hazel, green, blue, grey"),
    ParamSpec("gaze_x", -1.0, 1.0, "iris offset sideways, both eyes (eye half-widths)", True),
    ParamSpec("gaze_y", -0.06, 0.06, "iris offset up/down (eye half-widths)"),
    ParamSpec("brow_thickness", 0.05, 0.09, "eyebrow thickness (H)"),
    ParamSpec("brow_darkness", 0.5, 1.0, "eyebrow darkness"),
    ParamSpec("hair_hue", 0.0, 1.0, "hair colour: black, dark brown, brown, auburn, blond"),
    ParamSpec("hair_grey", 0.0, 1.0, "grey hair above 0.75"),
    ParamSpec("hair_line", -0.92, -0.45, "hairline height at the midline (y, H; -0.9 = nearly bald)"),
    ParamSpec("hair_curve", 0.1, 0.45, "how much the hairline rises at the temples (H per W^2)"),
    ParamSpec("hair_side", 0.0, 1.0, "hair over the sides of the head"),
    ParamSpec("asym_hair", -1.0, 1.0, "hairline tilted (a side parting)", True),
)

SHAPE_PARAM_NAMES: tuple[str, ...] = tuple(p.name for p in SHAPE_PARAMS)
ALBEDO_PARAM_NAMES: tuple[str, ...] = tuple(p.name for p in ALBEDO_PARAMS)

# Low-frequency skin variation: per colour channel, coefficients of a separable cosine basis.
# Symmetric terms cos(m*pi*|u|/2) * b_n(v) (m = 0..3), antisymmetric sign(u)*sin(m*pi*|u|/2) *
# b_n(v) (m = 1..3), with b_n(v) = cos(n*pi*(v+1)/2), n = 0..3.
_NOISE_FREQS = 4
NOISE_SYM_TERMS = _NOISE_FREQS * _NOISE_FREQS
NOISE_ANTI_TERMS = (_NOISE_FREQS - 1) * _NOISE_FREQS

# sRGB-ish colour ramps in [0, 1], interpolated piecewise linearly by a parameter in [0, 1].
_SKIN_RAMP = (
    (0.96, 0.82, 0.74),
    (0.90, 0.72, 0.60),
    (0.78, 0.58, 0.44),
    (0.62, 0.43, 0.30),
    (0.46, 0.30, 0.20),
    (0.36, 0.23, 0.16),
)
_HAIR_RAMP = (
    (0.07, 0.06, 0.05),
    (0.22, 0.14, 0.09),
    (0.42, 0.28, 0.17),
    (0.55, 0.25, 0.11),
    (0.80, 0.65, 0.40),
)
_IRIS_RAMP = (
    (0.18, 0.10, 0.06),
    (0.36, 0.22, 0.11),
    (0.44, 0.38, 0.18),
    (0.28, 0.44, 0.28),
    (0.26, 0.42, 0.66),
    (0.48, 0.52, 0.56),
)


def params_from_unit(unit: torch.Tensor, specs: tuple[ParamSpec, ...], asymmetry: float) -> torch.Tensor:
    """Map uniform draws to parameter values.

    unit: (N, P) float in [0, 1), P = len(specs).
    Returns (N, P) float: low + (high - low) * unit, times ``asymmetry`` for asymmetric specs.
    """
    if unit.dim() != 2 or unit.shape[1] != len(specs):
        raise ValueError(f"unit must have shape (N, {len(specs)}), got {tuple(unit.shape)}")
    low = unit.new_tensor([s.low for s in specs])
    high = unit.new_tensor([s.high for s in specs])
    scale = unit.new_tensor([asymmetry if s.asymmetric else 1.0 for s in specs])
    return (low + (high - low) * unit) * scale


def image_grid(
    size: int, supersample: int = 1, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised coordinates of the (sub)pixel centres of an S x S image.

    size: S; supersample: k sub-pixels per pixel and axis (k*S samples per axis).
    Returns (u (1, 1, k*S), v (1, k*S, 1)) float32, -1 and +1 at the first and last *pixel* centre.
    ``u`` is exactly antisymmetric (u[j] == -u[k*S-1-j]), which keeps symmetric faces exactly
    symmetric.
    """
    if size < 2 or supersample < 1:
        raise ValueError(f"image_grid needs size >= 2 and supersample >= 1, got {size}, {supersample}")
    n = size * supersample
    # sub-pixel j sits at pixel coordinate (j + 0.5)/k - 0.5; the odd integer numerator
    # 2j + 1 - k*S flips sign exactly under j -> n-1-j.
    num = torch.arange(n, device=device, dtype=torch.float64) * 2 + 1 - n
    coord = (num / (supersample * (size - 1))).float()
    return coord.view(1, 1, n), coord.view(1, n, 1)


def _p(params: torch.Tensor, names: tuple[str, ...], name: str) -> torch.Tensor:
    """Column ``name`` of (N, P) params as (N, 1, 1) for broadcasting against (1, S, S) grids."""
    return params[:, names.index(name)].view(-1, 1, 1)


def _blob(x: torch.Tensor, y: torch.Tensor, x0, y0, sx, sy) -> torch.Tensor:
    """Unnormalised 2D Gaussian exp(-((x-x0)/sx)^2/2) * exp(-((y-y0)/sy)^2/2).

    Written as a product so that x (N, 1, S) and y (N, S, 1) grids cost one full-size multiply.
    """
    return torch.exp(-0.5 * ((x - x0) / sx) ** 2) * torch.exp(-0.5 * ((y - y0) / sy) ** 2)


def _ramp(t: torch.Tensor, colours: tuple[tuple[float, float, float], ...]) -> torch.Tensor:
    """Piecewise-linear colour ramp. t: (N,) in [0, 1]. Returns (N, 3, 1, 1) in [0, 1]."""
    table = t.new_tensor(colours)  # (K, 3)
    pos = t.clamp(0.0, 1.0) * (len(colours) - 1)
    i0 = pos.floor().long().clamp(max=len(colours) - 2)
    frac = (pos - i0.to(pos.dtype)).unsqueeze(1)
    return (table[i0] * (1 - frac) + table[i0 + 1] * frac).view(-1, 3, 1, 1)


@dataclass(frozen=True)
class _Layout:
    """Per-head feature positions shared by geometry and albedo, each (N, 1, 1) float.

    Pairs are (left, right) in image space (left = smaller u). x-positions in W units, y in H units.
    """

    H: torch.Tensor
    W: torch.Tensor
    cy: torch.Tensor
    eye_x: tuple[torch.Tensor, torch.Tensor]
    eye_y: tuple[torch.Tensor, torch.Tensor]
    brow_y: tuple[torch.Tensor, torch.Tensor]
    nose_root: torch.Tensor
    tip_x: torch.Tensor
    tip_y: torch.Tensor
    mouth_y: torch.Tensor
    mouth_tilt: torch.Tensor


def _layout(shape: torch.Tensor) -> _Layout:
    p = lambda name: _p(shape, SHAPE_PARAM_NAMES, name)  # noqa: E731
    H = p("head_height")
    W = p("head_width") * H
    ex, ey = p("eye_spacing"), p("eye_height")
    edx, edy, bdy = 0.3 * p("asym_eye_dx"), 0.3 * p("asym_eye_dy"), 0.3 * p("asym_brow_dy")
    brow = ey - 0.2 + p("brow_height")
    tip_y = ey + p("nose_length")
    return _Layout(
        H=H,
        W=W,
        cy=H - 0.74,  # crown at v = -0.74 for every head: room for the neck below the chin
        eye_x=(-ex - edx, ex + edx),
        eye_y=(ey - edy, ey + edy),
        brow_y=(brow - bdy, brow + bdy),
        nose_root=ey - 0.03,
        tip_x=0.3 * p("asym_nose_shift"),
        tip_y=tip_y,
        mouth_y=tip_y + 0.36 * (1.0 - tip_y),
        mouth_tilt=0.3 * p("asym_mouth_tilt"),
    )


def _head_coords(layout: _Layout, u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return u / layout.W, (v - layout.cy) / layout.H


def _head_radius(shape: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Superelliptic radius of the head outline (< 1 inside), (N, S, S): round crown, jaw
    squareness and width from ``jaw_width``, one side widened by ``asym_jaw``."""
    jaw = _p(shape, SHAPE_PARAM_NAMES, "jaw_width")
    asym = 0.3 * _p(shape, SHAPE_PARAM_NAMES, "asym_jaw")
    lower = torch.sigmoid(6.0 * (y - 0.1))  # 0 above the cheekbones, 1 at the jaw
    power = 2.0 + 0.9 * jaw * lower
    width = 1.0 - (0.22 - 0.14 * jaw) * torch.sigmoid(6.0 * (y - 0.45))
    width = width * (1.0 + asym * torch.tanh(4.0 * x) * lower)
    ax = (x / width) ** 2 + 1e-12
    ay = y**2 + 1e-12
    return (ax ** (power / 2) + ay ** (power / 2)) ** (1.0 / power)


def _ears(shape: torch.Tensor, lay: _Layout, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Signed ear field (> 0 inside an ear), (N, S, S): an ellipse on each side of the head at the
    height between the eyes and the nose tip, half inside the head outline."""
    size = _p(shape, SHAPE_PARAM_NAMES, "ear_size")
    ear_y = (lay.eye_y[0] + lay.eye_y[1]) / 2 + 0.45 * (lay.tip_y - lay.eye_y[0] / 2 - lay.eye_y[1] / 2)
    return 1.0 - ((x.abs() - 0.97) / (0.11 * size)) ** 2 - ((y - ear_y) / (0.19 * size)) ** 2


def _full_quads(mask: torch.Tensor) -> torch.Tensor:
    """Keep the pixels of (N, S, S) bool masks that are a corner of a 2x2 block inside the mask.

    The renderer draws only triangles with all three vertices in the mask; a pixel in no full
    block would be a vertex of no drawn triangle, a part of the mask that never shows. The rule
    is mirror-symmetric (unlike a rule per triangle, whose diagonal has a direction).
    """
    quad = (mask[:, :-1, :-1] & mask[:, :-1, 1:] & mask[:, 1:, :-1] & mask[:, 1:, 1:]).unsqueeze(1).float()
    return F.max_pool2d(F.pad(quad, (1, 1, 1, 1)), 2, stride=1)[:, 0] > 0


def _erode(mask: torch.Tensor) -> torch.Tensor:
    """3x3 erosion of (N, S, S) bool masks; outside the image counts as inside (a neck that runs
    off the bottom of the image has no outline there)."""
    outside = F.pad((~mask).unsqueeze(1).float(), (1, 1, 1, 1), value=0.0)
    return F.max_pool2d(outside, 3, stride=1)[:, 0] == 0


def _smooth_min(a: torch.Tensor, b: torch.Tensor, k: torch.Tensor | float) -> torch.Tensor:
    """Polynomial smooth minimum (symmetric in a and b); equals min(a, b) where |a-b| >= k."""
    h = (k - (a - b).abs()).clamp(min=0.0) / k
    return torch.minimum(a, b) - h * h * (k / 4.0)


def canonical_shape(shape: torch.Tensor, image_size: int, fov_deg: float = 10.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The frontal depth map and head mask of each head.

    shape: (N, P) float, P = len(SHAPE_PARAMS), values in the ranges of SHAPE_PARAMS.
    fov_deg: the camera's field of view (sets the head's true size, hence its depth relief).
    Returns depth (N, S, S) float32 in camera units (for fov 10: nose tip ~0.935-0.975, outline
    EDGE_DEPTH = 1.03, mean over the mask ~1.0; pixels outside the mask hold EDGE_DEPTH so normals
    at the outline stay finite) and mask (N, S, S) bool (head, ears, and the neck down to the
    bottom of the image; only pixels that are corners of a 2x2 block inside it, i.e. pixels the
    renderer can draw).
    """
    if shape.dim() != 2 or shape.shape[1] != len(SHAPE_PARAMS):
        raise ValueError(f"shape must have shape (N, {len(SHAPE_PARAMS)}), got {tuple(shape.shape)}")
    lay = _layout(shape)
    unit = lay.W * math.tan(math.radians(fov_deg) / 2)  # L: the head's half-width in camera units
    g = lambda name: _p(shape, SHAPE_PARAM_NAMES, name)  # noqa: E731  (layout params as given)
    p = lambda name: unit * g(name)  # noqa: E731  (relief params, in L, to camera units)
    u, v = image_grid(image_size, device=shape.device)
    x, y = _head_coords(lay, u, v)
    r = _head_radius(shape, x, y)
    head = r < 1.0
    # The crown recedes less than the face (a flatter dome): a turned head keeps a rounder top.
    crown = 1.0 - 0.35 * torch.sigmoid(6.0 * (-0.55 - y))
    base = EDGE_DEPTH - p("head_depth") * crown * (1.0 - r**_PROFILE_POWER).clamp(min=0.0) ** _PROFILE_GAMMA

    aspect = lay.W / lay.H  # converts W units to H units: keeps round features round in the image
    (lx, rx), (ly, ry) = lay.eye_x, lay.eye_y
    eye_size = g("eye_size")
    brow = -p("brow_size") * (
        _blob(x, y, lx, lay.brow_y[0] + 0.02, 0.3, 0.08) + _blob(x, y, rx, lay.brow_y[1] + 0.02, 0.3, 0.08)
    ) - 0.5 * p("brow_size") * _blob(x, y, 0.0, (lay.brow_y[0] + lay.brow_y[1]) / 2 + 0.06, 0.14, 0.08)
    sx, sy = 1.3 * eye_size, 1.0 * eye_size * aspect
    sockets = p("eye_depth") * (_blob(x, y, lx, ly, sx, sy) + _blob(x, y, rx, ry, sx, sy))
    bx, by = 0.7 * eye_size, 0.45 * eye_size * aspect
    eyeballs = -0.45 * p("eye_depth") * (_blob(x, y, lx, ly, bx, by) + _blob(x, y, rx, ry, bx, by))

    # Nose: a ridge from the root (between the eyes) to the tip, growing in height and width.
    prot, nw = p("nose_protrusion"), g("nose_width")
    t = ((y - lay.nose_root) / (lay.tip_y - lay.nose_root)).clamp(0.0, 1.0)
    above_root = torch.exp(-0.5 * ((lay.nose_root - y).clamp(min=0.0) / 0.06) ** 2)
    below_tip = torch.exp(-0.5 * ((y - lay.tip_y).clamp(min=0.0) / 0.05) ** 2)
    height = prot * (0.12 + 0.7 * t**1.5) * above_root * below_tip
    half_width = nw * (0.35 + 0.65 * t)
    ridge = torch.exp(-0.5 * ((x - lay.tip_x * t) / half_width) ** 2)
    bulb = (0.18 + 0.2 * g("nose_tip")) * _blob(x, y, lay.tip_x, lay.tip_y - 0.015, 0.1, 0.06)
    alae = 0.3 * (
        _blob(x, y, lay.tip_x - 0.95 * nw, lay.tip_y + 0.01, 0.07, 0.05)
        + _blob(x, y, lay.tip_x + 0.95 * nw, lay.tip_y + 0.01, 0.07, 0.05)
    )
    nose = -height * ridge - prot * (bulb + alae)

    cheeks = -p("cheek_fullness") * (_blob(x, y, -0.48, 0.22, 0.22, 0.2) + _blob(x, y, 0.48, 0.22, 0.22, 0.2))

    # Mouth: upper and lower lip bumps with a groove between them; the tilt shears y.
    ym = y - lay.mouth_tilt * x
    lw, lp = g("lip_size"), p("lip_protrusion")
    lips = (
        -lp * _blob(x, ym, 0.0, lay.mouth_y - 0.035, 0.9 * lw, 0.035)
        - 1.2 * lp * _blob(x, ym, 0.0, lay.mouth_y + 0.045, 0.75 * lw, 0.045)
        + 0.5 * lp * _blob(x, ym, 0.0, lay.mouth_y, lw, 0.012)
        + 0.08 * unit * _blob(x, ym, 0.0, lay.mouth_y + 0.13, 0.7 * lw, 0.03)
    )
    cs = g("chin_size")
    chin = -p("chin_protrusion") * _blob(x, y, 0.0, 1.0 - 0.9 * cs, 1.2 * cs / aspect, cs)
    twist = 0.6 * p("asym_twist") * x * torch.exp(-(r**2))
    # The midline bulges in front of the cheeks and eye sockets (a face is convex across).
    midline = -p("face_convexity") * _blob(x, y, 0.0, 0.25, 0.42, 0.75)

    features = (brow + sockets + eyeballs + nose + cheeks + lips + chin + twist + midline) * (1.0 - r**6).clamp(min=0.0)
    face = base + features

    # Neck: a cylinder from under the jaw to the bottom of the image, its front halfway between
    # the face plane and the outline, blended smoothly into the underside of the chin.
    neck_hw = g("neck_width") * lay.W
    neck_top = lay.cy + 0.45 * lay.H
    neck = (u.abs() < neck_hw) & (v > neck_top)
    across = (u / neck_hw).clamp(-1.0, 1.0)
    neck_radius = g("neck_width") * unit
    neck_front = EDGE_DEPTH - 0.5 * p("head_depth")
    neck_depth = neck_front + neck_radius * (1.0 - (1.0 - across**2).clamp(min=0.0).sqrt())

    # Ears: flaps on the sides, their outer rim farther back; attached where they meet the head.
    ear_field = _ears(shape, lay, x, y)
    ears = ear_field > 0
    ear_depth = EDGE_DEPTH - unit * (0.4 - 0.5 * ((x.abs() - 0.9) / 0.2).clamp(0.0, 1.0) - 0.08 * ear_field)

    far = 2.0 * EDGE_DEPTH  # "no surface": loses every smooth-min
    depth = _smooth_min(torch.where(head, face, far), torch.where(ears, ear_depth, far), 0.1 * unit)
    depth = _smooth_min(depth, torch.where(neck, neck_depth, far), 0.2 * unit)
    mask = _full_quads(head | neck | ears)
    # Outline vertices all at (at least) the edge depth: their depths would otherwise jump along
    # the pixel staircase of the outline and turn into spikes when the head turns.
    outline = mask & ~_erode(mask)
    depth = torch.where(outline, depth.clamp(min=EDGE_DEPTH), depth)
    depth = torch.where(mask, depth, torch.full_like(depth, EDGE_DEPTH))
    return depth.float(), mask


def _soft(signed: torch.Tensor, sharpness: float) -> torch.Tensor:
    """Soft indicator of signed > 0 (sigmoid edge of width ~1/sharpness)."""
    return torch.sigmoid(signed * sharpness)


def _skin_noise(noise: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Low-frequency field from basis coefficients.

    noise: (N, 3, NOISE_SYM_TERMS + NOISE_ANTI_TERMS) float (about unit normal; the antisymmetric
    coefficients already scaled by the asymmetry). Returns (N, 3, S, S), roughly in [-1, 1].
    """
    k = _NOISE_FREQS
    au = u.view(-1).abs()
    sign = torch.sign(u.view(-1))
    m = torch.arange(k, device=u.device, dtype=u.dtype).view(-1, 1)
    cos_u = torch.cos(m * (math.pi / 2) * au)  # (k, S), even in u
    sin_u = sign * torch.sin(m[1:] * (math.pi / 2) * au)  # (k-1, S), odd in u
    basis_v = torch.cos(m * (math.pi / 2) * (v.view(-1) + 1.0))  # (k, S)
    decay = 1.0 / (1.0 + m.view(-1, 1) + m.view(1, -1))  # favour low frequencies
    n = noise.shape[0]
    sym = noise[..., : k * k].reshape(n, 3, k, k) * decay
    anti = noise[..., k * k :].reshape(n, 3, k - 1, k) * decay[1:]
    field = torch.einsum("bcmn,ny,mx->bcyx", sym, basis_v, cos_u) + torch.einsum(
        "bcmn,ny,mx->bcyx", anti, basis_v, sin_u
    )
    return field * 0.5


def canonical_albedo(
    shape: torch.Tensor,
    albedo: torch.Tensor,
    noise: torch.Tensor,
    image_size: int,
    supersample: int = 1,
) -> torch.Tensor:
    """The frontal albedo of each head: skin, eyes, brows, lips, nostrils and hair.

    shape: (N, P) float (SHAPE_PARAMS); albedo: (N, Q) float (ALBEDO_PARAMS);
    noise: (N, 3, NOISE_SYM_TERMS + NOISE_ANTI_TERMS) float skin-variation coefficients.
    Feature edges are soft (about a pixel wide), which anti-aliases them; ``supersample`` > 1
    evaluates k^2 sub-pixels per pixel and box-filters them (slower, rarely visible).
    Returns (N, 3, S, S) float32 in [-1, 1].
    """
    n = shape.shape[0]
    if shape.dim() != 2 or shape.shape[1] != len(SHAPE_PARAMS):
        raise ValueError(f"shape must have shape (N, {len(SHAPE_PARAMS)}), got {tuple(shape.shape)}")
    if albedo.shape != (n, len(ALBEDO_PARAMS)):
        raise ValueError(f"albedo must have shape ({n}, {len(ALBEDO_PARAMS)}), got {tuple(albedo.shape)}")
    if noise.shape != (n, 3, NOISE_SYM_TERMS + NOISE_ANTI_TERMS):
        raise ValueError(
            f"noise must have shape ({n}, 3, {NOISE_SYM_TERMS + NOISE_ANTI_TERMS}), got {tuple(noise.shape)}"
        )
    lay = _layout(shape)
    p = lambda name: _p(shape, SHAPE_PARAM_NAMES, name)  # noqa: E731
    a = lambda name: _p(albedo, ALBEDO_PARAM_NAMES, name)  # noqa: E731
    col = lambda name: albedo[:, ALBEDO_PARAM_NAMES.index(name)]  # noqa: E731
    u, v = image_grid(image_size, supersample, device=shape.device)
    x, y = _head_coords(lay, u, v)
    aspect = lay.W / lay.H
    sharp = 16.0 * image_size / 64  # soft edges (in head units) about a pixel wide

    # Skin: tone ramp, hue shift, low-frequency variation, blush on the cheeks.
    skin = _ramp(col("skin_tone"), _SKIN_RAMP)
    red = a("skin_redness").unsqueeze(1)
    skin = skin * (1.0 + red * skin.new_tensor([0.05, -0.01, -0.05]).view(1, 3, 1, 1))
    field = _skin_noise(noise, u, v)
    lum = field.mean(dim=1, keepdim=True)
    colour = skin * (1.0 + a("skin_variation").unsqueeze(1) * (0.12 * lum + 0.04 * (field - lum)))
    cheeks = (_blob(x, y, -0.45, 0.25, 0.2, 0.16) + _blob(x, y, 0.45, 0.25, 0.2, 0.16)).unsqueeze(1)
    blush = a("blush").unsqueeze(1) * cheeks * colour.new_tensor([0.06, -0.05, -0.04]).view(1, 3, 1, 1)
    colour = colour * (1.0 + blush)
    neck = _soft(y - 0.95, sharp / 4).unsqueeze(1)
    colour = colour * (1.0 - 0.12 * neck)
    ear_field = _ears(shape, lay, x, y)
    inner_ear = _soft(ear_field - 0.45, sharp / 8) * _soft(x.abs() - 1.0, sharp / 2)
    colour = colour * (1.0 - 0.25 * inner_ear.unsqueeze(1))

    # Lips and the mouth line.
    ym = y - lay.mouth_tilt * x
    lw = p("lip_size")
    upper = 1.0 - (x / (0.95 * lw)) ** 2 - ((ym - (lay.mouth_y - 0.03)) / 0.035) ** 2
    lower = 1.0 - (x / (0.8 * lw)) ** 2 - ((ym - (lay.mouth_y + 0.035)) / 0.045) ** 2
    lips = _soft(torch.maximum(upper, lower), 4.0).unsqueeze(1)
    tint = a("lip_tint").unsqueeze(1)
    lip_colour = colour * (1.0 - tint * colour.new_tensor([0.15, 0.5, 0.45]).view(1, 3, 1, 1)) * (0.95 - 0.1 * tint)
    colour = torch.lerp(colour, lip_colour, lips)
    line = 1.0 - (x / lw) ** 2 - ((ym - lay.mouth_y) / 0.012) ** 2
    colour = colour * (1.0 - 0.6 * _soft(line, 3.0).unsqueeze(1))

    # Nostrils: dark spots either side of the nose tip.
    nw = p("nose_width")
    nostrils = (
        _blob(x, y, lay.tip_x - 0.45 * nw, lay.tip_y + 0.035, 0.045, 0.022)
        + _blob(x, y, lay.tip_x + 0.45 * nw, lay.tip_y + 0.035, 0.045, 0.022)
    ).unsqueeze(1)
    colour = colour * (1.0 - 0.6 * nostrils.clamp(max=1.0))

    # Eyebrows: arcs above the eyes, thinning towards the outer end.
    hair = _ramp(col("hair_hue"), _HAIR_RAMP)
    grey = ((a("hair_grey") - 0.75) / 0.25).clamp(0.0, 1.0).unsqueeze(1)
    hair = torch.lerp(hair, hair.mean(dim=1, keepdim=True) * 0.5 + 0.4, grey)
    brow_colour = torch.lerp(colour, hair * 0.8, a("brow_darkness").unsqueeze(1))
    size = p("eye_size")
    thickness = a("brow_thickness")

    def brow(x0: torch.Tensor, y0: torch.Tensor, outward: float) -> torch.Tensor:
        s = (x - x0) / (1.3 * size)
        arc = y0 - 0.04 * (1.0 - s**2)
        half = 0.5 * thickness * (1.0 - 0.45 * (outward * s).clamp(min=0.0))
        return torch.minimum(half - (y - arc).abs(), (1.0 - s.abs()) * 0.1)

    brows = _soft(
        torch.maximum(brow(lay.eye_x[0] - 0.02, lay.brow_y[0], -1.0), brow(lay.eye_x[1] + 0.02, lay.brow_y[1], 1.0)),
        sharp * 2,
    ).unsqueeze(1)
    colour = torch.lerp(colour, brow_colour, brows)

    # Eyes: lash line, white, iris, pupil, in eye half-width units (isotropic in the image).
    iris = _ramp(col("iris_hue"), _IRIS_RAMP)
    gx, gy = a("gaze_x"), a("gaze_y")
    lash_colour = colour * 0.25

    def eye_layers(x0: torch.Tensor, y0: torch.Tensor) -> tuple[torch.Tensor, ...]:
        dx = (x - x0) / size
        dy = (y - y0) / (size * aspect)
        white = 1.0 - dx**2 - (dy / 0.42) ** 2
        lash = torch.minimum(1.0 - (dx / 1.08) ** 2 - ((dy + 0.06) / 0.55) ** 2, -dy - 0.05)
        ring = 0.46**2 - (dx - gx) ** 2 - (dy - gy) ** 2
        pupil = 0.2**2 - (dx - gx) ** 2 - (dy - gy) ** 2
        return white, lash, ring, pupil

    left, right = eye_layers(lay.eye_x[0], lay.eye_y[0]), eye_layers(lay.eye_x[1], lay.eye_y[1])
    white, lash, ring, pupil = (torch.maximum(a, b) for a, b in zip(left, right))
    k = sharp * 0.6
    in_eye = _soft(white, k).unsqueeze(1)
    colour = torch.lerp(colour, lash_colour, _soft(lash, k).unsqueeze(1))
    colour = torch.lerp(colour, colour.new_tensor([0.88, 0.86, 0.84]).view(1, 3, 1, 1), in_eye)
    colour = torch.lerp(colour, iris, in_eye * _soft(ring, k * 4).unsqueeze(1))
    colour = torch.lerp(colour, colour.new_full((1, 3, 1, 1), 0.03), in_eye * _soft(pupil, k * 4).unsqueeze(1))

    # Hair: above a curved hairline, and down the sides for hair_side > 0.
    hair_line = a("hair_line") + a("hair_curve") * x**2 + 0.3 * a("asym_hair") * x
    top = _soft(hair_line - y, sharp * 1.5)
    side_edge = 0.95 - 0.3 * a("hair_side")
    side_bottom = (lay.eye_y[0] + lay.eye_y[1]) / 2 + 0.3 * a("hair_side") - 0.1
    sides = _soft(x.abs() - side_edge, sharp * 1.5) * _soft(side_bottom - y, sharp)
    streaks = 1.0 + 0.1 * torch.cos(20.0 * x.abs() + 4.0 * y) * torch.cos(7.0 * x)
    hair_mask = torch.maximum(top, sides).unsqueeze(1)
    colour = torch.lerp(colour, hair * streaks.unsqueeze(1), hair_mask)

    if supersample > 1:
        colour = F.avg_pool2d(colour, supersample)
    return (colour * 2.0 - 1.0).clamp(-1.0, 1.0).float()


def smooth_background(params: torch.Tensor, image_size: int) -> torch.Tensor:
    """Random smooth backgrounds: a colour, a linear gradient and a vignette.

    params: (N, 7) float in [0, 1]: colour (3), gradient direction angle, gradient strength,
    second-colour mix, vignette strength. Returns (N, 3, S, S) float32 in [-1, 1].
    """
    if params.dim() != 2 or params.shape[1] != 7:
        raise ValueError(f"background params must have shape (N, 7), got {tuple(params.shape)}")
    u, v = image_grid(image_size, device=params.device)
    base = (0.1 + 0.8 * params[:, :3]).view(-1, 3, 1, 1)
    angle = (params[:, 3] * 2 * math.pi).view(-1, 1, 1)
    ramp = (torch.cos(angle) * u + torch.sin(angle) * v).unsqueeze(1) / 2  # [-0.7, 0.7]
    strength = (0.05 + 0.25 * params[:, 4]).view(-1, 1, 1, 1)
    other = base.flip(1)  # a second, different colour to drift towards along the gradient
    mix = params[:, 5].view(-1, 1, 1, 1) * 0.5
    colour = base + strength * ramp + mix * (ramp + 0.5).clamp(0, 1) * (other - base)
    vignette = 1.0 - (0.1 + 0.3 * params[:, 6]).view(-1, 1, 1, 1) * ((u**2 + v**2) / 2).unsqueeze(1)
    return ((colour * vignette).clamp(0.0, 1.0) * 2.0 - 1.0).float()

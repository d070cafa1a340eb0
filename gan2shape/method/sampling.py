"""Views and lights of the pseudo-samples (docs/METHOD.md section 3, step 2).

In step 2 the current texture and depth are re-lit and re-viewed at random, then rendered: the
"pseudo-samples" that the GAN inversion learns to reproduce.

Lights (reference: XingangPan/GAN2Shape ``model.py``, ``sample_pseudo_imgs``). A light is kept in
the light net's raw parameterisation ``[l0, l1, l2, l3]``: ambient ``k_a = l0/2 + 0.5``, diffuse
``k_d = l1/2 + 0.5``, direction ``normalize([l2, l3, 1])``. The reference draws, per pseudo-sample,
a direction ``x ~ U(x_min, x_max)``, ``y ~ U(y_min, y_max)`` and a diffuse boost
``d ~ U(d_min, d_max)``, and shades with ``k_d + d`` and ``k_a + alpha * d`` (alpha < 0: a
brighter diffuse term comes with a darker ambient term), where k_a, k_d are the target's current
light. In raw numbers that is ``l0 + 2 alpha d``, ``l1 + 2 d``, ``x``, ``y`` (``sample_lights``).
The raw values may leave [-1, 1]; the shading formula takes any value.

Views. The reference samples a multivariate normal fitted to views of real images (files not
published with usable provenance, and not available here) and multiplies the sampled yaw by
``view_scale`` (1.2). ``ViewDistribution`` is that normal over our *physical* view
``[pitch, yaw, roll (radians), tx, ty, tz]`` (the convention of ``gan2shape.render``): the raw view
of the reference is a fixed diagonal rescaling of it, so a normal in one space is a normal in the
other and the yaw scaling means the same. Scaling the sampled yaw by s is the linear map
diag(1, s, 1, 1, 1, 1), i.e. mean_yaw * s and the yaw row and column of the covariance * s
(variance * s^2): ``ViewDistribution.scale_yaw``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from gan2shape.errors import InputError

__all__ = [
    "VIEW_NAMES",
    "RandLight",
    "LightStats",
    "ViewDistribution",
    "sample_lights",
    "light_to_physical",
    "light_to_raw",
    "estimate_view_light_from_heads",
]

VIEW_NAMES: tuple[str, ...] = ("pitch", "yaw", "roll", "tx", "ty", "tz")
_YAW = 1
_JSON_KIND = "gan2shape.view_distribution"


@dataclass(frozen=True)
class RandLight:
    """The reference's ``rand_light`` = [x_min, x_max, y_min, y_max, d_min, d_max, alpha].

    x, y: ranges of the light direction's raw x and y (direction = normalize([x, y, 1]));
    d: range of the diffuse boost added to k_d; alpha: the ambient change per unit of boost
    (k_a + alpha * d). Faces: (-1, 1, -0.2, 0.8, -0.1, 0.6, -0.6); synface: (-0.9, 0.9, -0.3, 0.8,
    -0.1, 0.7, -0.4).
    """

    x_min: float = -1.0
    x_max: float = 1.0
    y_min: float = -0.2
    y_max: float = 0.8
    d_min: float = -0.1
    d_max: float = 0.6
    alpha: float = -0.6

    def __post_init__(self) -> None:
        values = (self.x_min, self.x_max, self.y_min, self.y_max, self.d_min, self.d_max, self.alpha)
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"rand_light values must be finite, got {values}")
        for lo, hi, name in (
            (self.x_min, self.x_max, "x"),
            (self.y_min, self.y_max, "y"),
            (self.d_min, self.d_max, "d"),
        ):
            if lo > hi:
                raise ValueError(f"rand_light: {name}_min ({lo}) must be <= {name}_max ({hi})")

    @classmethod
    def from_sequence(cls, values: Sequence[float]) -> RandLight:
        """From the reference's 7-list [x_min, x_max, y_min, y_max, d_min, d_max, alpha]."""
        if len(values) != 7:
            raise ValueError(
                "rand_light must hold 7 numbers [x_min, x_max, y_min, y_max, d_min, d_max, alpha], "
                f"got {len(values)}: {list(values)}"
            )
        return cls(*(float(v) for v in values))


def _as_rand_light(rand_light: RandLight | Sequence[float]) -> RandLight:
    return rand_light if isinstance(rand_light, RandLight) else RandLight.from_sequence(rand_light)


def _uniform(n: int, lo: float, hi: float, generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else torch.device("cpu")
    return lo + (hi - lo) * torch.rand(n, generator=generator, device=device, dtype=torch.float64)


def sample_lights(
    n: int,
    rand_light: RandLight | Sequence[float],
    base_light: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random pseudo-sample lights around each base light, as the reference's step 2 draws them.

    Args:
        n: samples per base light (>= 1).
        rand_light: ``RandLight`` or the 7-list [x_min, x_max, y_min, y_max, d_min, d_max, alpha].
        base_light: (N, 4) float raw lights [l0, l1, l2, l3] (the light net's output space, usually
            in [-1, 1]); only l0 (ambient) and l1 (diffuse) are used: the direction is replaced.
        generator: torch random generator (its device is where the draws happen); None = global.

    Returns:
        (N * n, 4) raw lights, base-major (rows i*n .. i*n+n-1 come from base light i), dtype and
        device of ``base_light``: ``[l0 + 2 alpha d, l1 + 2 d, x, y]`` with x in [x_min, x_max],
        y in [y_min, y_max], d in [d_min, d_max] drawn uniformly and independently per row. In
        physical terms k_d' = k_d + d and k_a' = k_a + alpha d.
    """
    rl = _as_rand_light(rand_light)
    if n < 1:
        raise ValueError(f"sample_lights: n must be >= 1, got {n}")
    if base_light.dim() != 2 or base_light.shape[1] != 4:
        raise ValueError(f"sample_lights: base_light must be (N, 4) raw lights, got {tuple(base_light.shape)}")
    total = base_light.shape[0] * n
    x = _uniform(total, rl.x_min, rl.x_max, generator)
    y = _uniform(total, rl.y_min, rl.y_max, generator)
    d = _uniform(total, rl.d_min, rl.d_max, generator)
    base = base_light.detach().to(device=x.device, dtype=torch.float64).repeat_interleave(n, dim=0)
    out = torch.stack([base[:, 0] + 2.0 * rl.alpha * d, base[:, 1] + 2.0 * d, x, y], dim=1)
    return out.to(device=base_light.device, dtype=base_light.dtype)


def light_to_physical(light: torch.Tensor) -> torch.Tensor:
    """Raw (N, 4) [l0, l1, l2, l3] -> physical (N, 4) [k_a, k_d, lx, ly] (the benchmark's form)."""
    if light.dim() != 2 or light.shape[1] != 4:
        raise ValueError(f"light_to_physical: light must be (N, 4), got {tuple(light.shape)}")
    return torch.cat([light[:, :2] / 2 + 0.5, light[:, 2:]], dim=1)


def light_to_raw(light: torch.Tensor) -> torch.Tensor:
    """Physical (N, 4) [k_a, k_d, lx, ly] -> raw (N, 4) [2 k_a - 1, 2 k_d - 1, lx, ly]."""
    if light.dim() != 2 or light.shape[1] != 4:
        raise ValueError(f"light_to_raw: light must be (N, 4), got {tuple(light.shape)}")
    return torch.cat([light[:, :2] * 2 - 1, light[:, 2:]], dim=1)


def _check_mean_cov(mean: torch.Tensor, cov: torch.Tensor, dim: int, who: str) -> None:
    if mean.shape != (dim,):
        raise ValueError(f"{who}: mean must be ({dim},), got {tuple(mean.shape)}")
    if cov.shape != (dim, dim):
        raise ValueError(f"{who}: cov must be ({dim}, {dim}), got {tuple(cov.shape)}")
    if not (bool(torch.isfinite(mean).all()) and bool(torch.isfinite(cov).all())):
        raise ValueError(f"{who}: mean and cov must be finite")
    if not torch.allclose(cov, cov.T, atol=1e-9, rtol=1e-6):
        raise ValueError(f"{who}: cov must be symmetric")
    lowest = float(torch.linalg.eigvalsh(cov).min())
    scale = max(float(cov.diagonal().abs().max()), 1e-30)
    if lowest < -1e-9 * scale - 1e-15:
        raise ValueError(f"{who}: cov must be positive semi-definite, its lowest eigenvalue is {lowest}")


@dataclass(frozen=True)
class ViewDistribution:
    """A multivariate normal over the physical view [pitch, yaw, roll (radians), tx, ty, tz].

    mean: (6,) float64; cov: (6, 6) float64, symmetric positive semi-definite (a singular cov is
    allowed, e.g. tz always 0: that coordinate is then sampled as exactly its mean).
    """

    mean: torch.Tensor
    cov: torch.Tensor

    def __post_init__(self) -> None:
        mean = torch.as_tensor(self.mean, dtype=torch.float64).detach().cpu()
        cov = torch.as_tensor(self.cov, dtype=torch.float64).detach().cpu()
        _check_mean_cov(mean, cov, 6, "ViewDistribution")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "cov", (cov + cov.T) / 2)

    @classmethod
    def from_views(cls, views: torch.Tensor) -> ViewDistribution:
        """Fit mean and (unbiased, M-1) covariance to views: (M, 6) float physical, M >= 2."""
        if views.dim() != 2 or views.shape[1] != 6:
            raise ValueError(f"ViewDistribution.from_views: views must be (M, 6), got {tuple(views.shape)}")
        if views.shape[0] < 2:
            raise ValueError(f"ViewDistribution.from_views: need at least 2 views, got {views.shape[0]}")
        v = views.detach().to(torch.float64).cpu()
        return cls(mean=v.mean(0), cov=torch.cov(v.T))

    @classmethod
    def from_ranges(
        cls,
        yaw_deg: tuple[float, float] = (-60.0, 60.0),
        pitch_deg: tuple[float, float] = (-20.0, 20.0),
        roll_deg: tuple[float, float] = (-10.0, 10.0),
        translate_xy: float = 0.0,
    ) -> ViewDistribution:
        """Independent normals moment-matched to uniform ranges (a default when no views exist).

        Each angle range (lo, hi) in degrees gives mean (lo + hi)/2 and std (hi - lo)/sqrt(12)
        (the uniform's), converted to radians; tx and ty get mean 0 and std
        ``translate_xy / sqrt(3)`` (uniform on [-translate_xy, translate_xy]); tz is 0.
        """
        rows = []
        for name, rng in (("pitch_deg", pitch_deg), ("yaw_deg", yaw_deg), ("roll_deg", roll_deg)):
            lo, hi = (float(v) for v in rng)
            if not lo <= hi:
                raise ValueError(f"ViewDistribution.from_ranges: {name} must be (lo, hi) with lo <= hi, got {rng}")
            rows.append((math.radians((lo + hi) / 2), math.radians(hi - lo) / math.sqrt(12.0)))
        if not translate_xy >= 0.0:
            raise ValueError(f"ViewDistribution.from_ranges: translate_xy must be >= 0, got {translate_xy}")
        t_std = translate_xy / math.sqrt(3.0)
        rows += [(0.0, t_std), (0.0, t_std), (0.0, 0.0)]
        mean = torch.tensor([m for m, _ in rows], dtype=torch.float64)
        cov = torch.diag(torch.tensor([s * s for _, s in rows], dtype=torch.float64))
        return cls(mean=mean, cov=cov)

    def scale_yaw(self, scale: float) -> ViewDistribution:
        """The distribution of a sample whose yaw is multiplied by ``scale`` (> 0; the reference's
        view_scale, 1.2): mean_yaw * s, yaw row and column of cov * s (yaw std * s)."""
        if not scale > 0.0:
            raise ValueError(f"ViewDistribution.scale_yaw: scale must be > 0, got {scale}")
        d = torch.ones(6, dtype=torch.float64)
        d[_YAW] = scale
        return ViewDistribution(mean=self.mean * d, cov=self.cov * d[:, None] * d[None, :])

    @property
    def std(self) -> torch.Tensor:
        """(6,) float64 marginal standard deviations."""
        return self.cov.diagonal().clamp(min=0.0).sqrt()

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        device: str | torch.device = "cpu",
    ) -> torch.Tensor:
        """n views: (n, 6) float32 physical [pitch, yaw, roll (rad), tx, ty, tz] on ``device``.

        Drawn as mean + F eps with eps ~ N(0, I) on the generator's device and F F^T = cov from a
        symmetric eigen-decomposition (works for a singular cov, unlike a Cholesky factor).
        """
        if n < 1:
            raise ValueError(f"ViewDistribution.sample: n must be >= 1, got {n}")
        gen_device = generator.device if generator is not None else torch.device("cpu")
        eps = torch.randn(n, 6, generator=generator, device=gen_device, dtype=torch.float64)
        evals, evecs = torch.linalg.eigh(self.cov)
        factor = evecs * evals.clamp(min=0.0).sqrt()
        views = self.mean.to(gen_device) + eps @ factor.to(gen_device).T
        return views.to(device=device, dtype=torch.float32)

    def to_json_dict(self) -> dict:
        return {
            "kind": _JSON_KIND,
            "order": list(VIEW_NAMES),
            "units": "radians for pitch/yaw/roll, camera units for tx/ty/tz",
            "mean": self.mean.tolist(),
            "cov": self.cov.tolist(),
        }

    def save(self, path: str | Path) -> Path:
        """Write a small JSON file (kind, order, units, mean, cov); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json_dict(), indent=2) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ViewDistribution:
        """Read a file written by ``save``; says which file is wrong and why."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise InputError(f"{path} does not exist: make it with `gan2shape fit-views` first") from None
        except json.JSONDecodeError as exc:
            raise InputError(f"{path} is not valid JSON ({exc}): make it again with `gan2shape fit-views`") from None
        if not isinstance(data, dict) or data.get("kind") != _JSON_KIND:
            raise InputError(f"{path} is not a view distribution file (kind must be {_JSON_KIND!r}): check --view-dist")
        if data.get("order") != list(VIEW_NAMES):
            raise InputError(f"{path}: order must be {list(VIEW_NAMES)}, got {data.get('order')}")
        try:
            return cls(
                mean=torch.tensor(data["mean"], dtype=torch.float64), cov=torch.tensor(data["cov"], dtype=torch.float64)
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: bad mean/cov ({exc})") from None


@dataclass(frozen=True)
class LightStats:
    """Mean and covariance of raw lights [l0, l1, l2, l3] (the reference's light MVN; its mean is
    what ``add_mean_L`` adds). mean: (4,) float64; cov: (4, 4) float64."""

    mean: torch.Tensor
    cov: torch.Tensor

    def __post_init__(self) -> None:
        mean = torch.as_tensor(self.mean, dtype=torch.float64).detach().cpu()
        cov = torch.as_tensor(self.cov, dtype=torch.float64).detach().cpu()
        _check_mean_cov(mean, cov, 4, "LightStats")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "cov", (cov + cov.T) / 2)


def estimate_view_light_from_heads(train_h5: str | Path) -> tuple[ViewDistribution, LightStats]:
    """View distribution and light statistics fitted to a head-benchmark split (kind 'heads').

    This uses the benchmark's GROUND-TRUTH views and lights (datasets 'view' (N, 6) physical and
    'light' (N, 4) [k_a, k_d, lx, ly]): a stand-in for the reference's view/light MVN files, which
    were fitted to real data and are not available here. It gives the method knowledge of the
    test distribution's view and light statistics (not of any single image's view or light), so
    use it from the train split only and say so where results are reported.

    Args:
        train_h5: path of a 'heads' artifact (e.g. data/heads/train.h5); only 'view' and 'light'
            are read (not the images).

    Returns:
        (ViewDistribution fitted to the views, LightStats of the lights in raw form
        [2 k_a - 1, 2 k_d - 1, lx, ly]).
    """
    from gan2shape.artifacts import read_artifact
    from gan2shape.data.heads import KIND

    with read_artifact(train_h5, KIND, require=("view", "light")) as art:
        views = torch.from_numpy(np.asarray(art.array("view"), dtype=np.float64))
        lights = torch.from_numpy(np.asarray(art.array("light"), dtype=np.float64))
    if views.shape[0] < 2:
        raise ValueError(f"{train_h5}: need at least 2 instances to fit view/light statistics, got {views.shape[0]}")
    if views.dim() != 2 or views.shape[1] != 6 or lights.dim() != 2 or lights.shape[1] != 4:
        raise ValueError(
            f"{train_h5}: expected view (N, 6) and light (N, 4), got {tuple(views.shape)} and {tuple(lights.shape)}"
        )
    raw = light_to_raw(lights)
    return ViewDistribution.from_views(views), LightStats(mean=raw.mean(0), cov=torch.cov(raw.T))

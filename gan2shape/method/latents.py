"""The latent side of step 2: turning an encoder output into a GAN latent (docs/METHOD.md section 3).

A pseudo-sample is inverted as ``w = w_target + offset``: the encoder E maps the image to a hidden
vector of the mapping network, which is pushed through the network's last layers and compared
with the same layers' output at z = 0. Reference: XingangPan/GAN2Shape ``model.py``
(``load_latent``, ``latent_project``) with the mapping split of its ``style_forward``::

    e      = E(pseudo) - E(target)            (relative_enc; else e = E(pseudo))
    h0     = style_forward(0, depth=n_mlp - F1_d)      # hidden state of z = 0
    offset = style_forward(h0 + e, skip=n_mlp - F1_d) - style_forward(0)
    w      = w_target + offset

The reference's ``style`` is ``[PixelNorm, L1, ..., L_n_mlp]`` and ``style_forward(x, skip=s,
depth=d)`` applies the modules with index in [s, d). So with k = n_mlp - F1_d:

- k >= 1: h0 = PixelNorm then the first k - 1 linear layers (``mapping_head(0, k - 1)``) and the
  tail is the last ``F1_d + 1`` linear layers (``mapping_tail(h, k - 1)``). Note: one more linear
  layer than "the last F1_d layers" of the paper's wording; we follow the code.
- k = 0 (F1_d = n_mlp, synface): h0 = 0 itself (not even PixelNorm) and the tail is PixelNorm
  then all linear layers (``mapping_tail(h, 0, pixel_norm=True)``).

In both cases tail(h0) is exactly the W of z = 0 (``style_forward(0)``), so we subtract
``tail(h0)`` computed the same way as the first term: an encoder difference of zero then gives an
offset of exactly zero. The regulariser of step 2 is ``lam_regular * mean(offset^2)`` on this
W-space offset (``latent_offset``).

Our Generator's ``mapping_head(z, n)`` counts linear layers only (PixelNorm always first); the
reference counts PixelNorm as layer 0; ``mapping_split`` converts.

``method.offset`` picks how e becomes the offset (``OffsetMap``): 'mapping' is the reference's tail
above; 'linear' is ``offset = spread * e`` with the per-dimension spread of the GAN's w, an offset
that is small when e is small (with F1_d = n_mlp the tail starts with PixelNorm, which makes any
nonzero e a jump of about the whole spread of w).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gan2shape.errors import ArtifactError
from gan2shape.stylegan2.model import Generator

__all__ = [
    "mapping_split",
    "center_hidden",
    "mapping_tail_from_hidden",
    "OFFSET_KINDS",
    "w_spread",
    "OffsetMap",
    "make_offset_map",
    "latent_offset",
    "offset_to_latent",
    "invert_grouped",
    "w_target_from_z",
    "w_target_from_artifact",
    "check_w_target",
]


def mapping_split(generator: Generator, f1_d: int) -> tuple[int, int, bool]:
    """Where the reference splits the mapping network for a given F1_d.

    Args:
        generator: the StyleGAN2 generator (its n_mlp linear mapping layers).
        f1_d: the reference's F1_d, in [0, n_mlp] (2 for faces/cats/cars/churches, 8 for synface).

    Returns:
        (head_layers, tail_start, tail_pixel_norm): h0 = ``mapping_head(0, head_layers)`` (or the
        zero vector itself when ``tail_pixel_norm``), the tail is
        ``mapping_tail(h, tail_start, pixel_norm=tail_pixel_norm)``; it holds F1_d + 1 linear
        layers when F1_d < n_mlp and all n_mlp when F1_d = n_mlp (module docstring).
    """
    n_mlp = generator.n_mlp
    if not (isinstance(f1_d, int) and 0 <= f1_d <= n_mlp):
        raise ValueError(f"f1_d must be an int in [0, n_mlp={n_mlp}], got {f1_d!r}")
    k = n_mlp - f1_d  # the reference's split index, PixelNorm counted as module 0
    if k == 0:
        return 0, 0, True
    return k - 1, k - 1, False


def _device(generator: Generator) -> torch.device:
    return generator.input.input.device


def center_hidden(generator: Generator, f1_d: int) -> torch.Tensor:
    """h0: the mapping network's hidden state of z = 0 at the reference's split (module docstring).

    Returns (1, style_dim) float32 on the generator's device (the zero vector when F1_d = n_mlp).
    """
    head_layers, _, tail_pixel_norm = mapping_split(generator, f1_d)
    zero = torch.zeros(1, generator.style_dim, device=_device(generator))
    if tail_pixel_norm:
        return zero
    return generator.mapping_head(zero, head_layers)


def mapping_tail_from_hidden(h: torch.Tensor, generator: Generator, f1_d: int) -> torch.Tensor:
    """The reference's ``style_forward(h, skip=n_mlp - F1_d)``: h (N, style_dim) -> w (N, style_dim)
    float32 through the tail of the mapping network (F1_d + 1 linear layers, or PixelNorm + all
    n_mlp when F1_d = n_mlp)."""
    _, tail_start, tail_pixel_norm = mapping_split(generator, f1_d)
    return generator.mapping_tail(h, tail_start, pixel_norm=tail_pixel_norm)


def _check_codes(e_pseudo: torch.Tensor, e_target: torch.Tensor | None, relative: bool, dim: int) -> None:
    if e_pseudo.dim() != 2 or e_pseudo.shape[1] != dim:
        raise ValueError(f"e_pseudo must be (N, {dim}) encoder outputs, got {tuple(e_pseudo.shape)}")
    if relative:
        if e_target is None:
            raise ValueError(
                "relative=True needs e_target (the encoding of the target image); pass it or relative=False"
            )
        if e_target.dim() != 2 or e_target.shape[1] != dim or e_target.shape[0] not in (1, e_pseudo.shape[0]):
            raise ValueError(
                f"e_target must be (1, {dim}) or ({e_pseudo.shape[0]}, {dim}) to match e_pseudo, "
                f"got {tuple(e_target.shape)}"
            )


OFFSET_KINDS = ("mapping", "linear")


@torch.no_grad()
def w_spread(generator: Generator, n: int = 10000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and per-dimension standard deviation of the mapping's output w over n draws z ~ N(0, I).

    z is drawn on the CPU from ``seed`` (the same numbers on any device). Returns (mean (D,),
    std (D,)) float32 on the generator's device.
    """
    if n < 2:
        raise ValueError(f"w_spread needs n >= 2 samples, got {n}")
    rng = torch.Generator().manual_seed(seed)
    ws = [
        generator.get_latent(torch.randn(min(4096, n - a), generator.style_dim, generator=rng).to(_device(generator)))
        for a in range(0, n, 4096)
    ]
    w = torch.cat(ws)
    return w.mean(0), w.std(0)


@dataclass
class OffsetMap:
    """How an encoder difference e (N, D) becomes a W-space latent offset (N, D) (``method.offset``).

    kind 'mapping' (the reference): ``tail(h0 + e) - tail(h0)`` through the mapping network's last
    layers (module docstring; h0 = ``center_hidden(generator, f1_d)``). With F1_d = n_mlp the tail
    starts with PixelNorm, so any e of a fresh encoder already moves w by about the whole spread of
    the GAN's w: the offset cannot be small.
    kind 'linear': ``scale * e``, scale = the per-dimension spread of w (``w_spread``): E works in
    units of the GAN's own variation, e = 0 is no change and a small e a small change.
    Either way an encoder difference of exactly zero gives an offset of exactly zero.
    """

    kind: str
    generator: Generator
    f1_d: int = 8
    h0: torch.Tensor | None = None
    scale: torch.Tensor | None = None

    def __post_init__(self) -> None:
        dim = self.generator.style_dim
        if self.kind not in OFFSET_KINDS:
            raise ValueError(f"offset kind must be one of {OFFSET_KINDS}, got {self.kind!r}")
        if self.kind == "mapping":
            mapping_split(self.generator, self.f1_d)
            if self.h0 is None or tuple(self.h0.shape) != (1, dim):
                raise ValueError(f"a 'mapping' offset needs h0 (1, {dim}) (center_hidden)")
        elif self.scale is None or tuple(self.scale.shape) != (1, dim):
            raise ValueError(f"a 'linear' offset needs scale (1, {dim}) (w_spread)")

    def __call__(self, e: torch.Tensor) -> torch.Tensor:
        """e (N, D) float -> offset (N, D) float32; exactly 0 where e = 0; differentiable in e."""
        if self.kind == "linear":
            return e.float() * self.scale
        n = e.shape[0]
        # One tail call on [h0 + e; h0 repeated]: rows with equal inputs then go through the very same
        # kernel, so e = 0 gives an offset of exactly 0 (separate calls with batch N and batch 1 may
        # pick different matmul kernels and differ in the last bit).
        both = mapping_tail_from_hidden(
            torch.cat([self.h0 + e, self.h0.expand(n, -1)], dim=0), self.generator, self.f1_d
        )
        return both[:n] - both[n:]


def make_offset_map(generator: Generator, kind: str = "mapping", f1_d: int = 8) -> OffsetMap:
    """The OffsetMap of ``kind`` for this generator (h0 at the F1_d split, or the w spread of 10,000
    samples drawn with seed 0)."""
    if kind == "mapping":
        return OffsetMap(kind, generator, f1_d, h0=center_hidden(generator, f1_d))
    if kind == "linear":
        return OffsetMap(kind, generator, f1_d, scale=w_spread(generator)[1][None])
    raise ValueError(f"offset kind must be one of {OFFSET_KINDS}, got {kind!r}")


def latent_offset(
    e_pseudo: torch.Tensor,
    e_target: torch.Tensor | None,
    offset_map: OffsetMap,
    relative: bool = True,
) -> torch.Tensor:
    """The W-space offset of pseudo-samples: ``offset_map(e)``, e = e_pseudo - e_target.

    Args:
        e_pseudo: (N, D) float encoder outputs E(pseudo-sample), D = style_dim.
        e_target: (1, D) or (N, D) float E(target image); required when ``relative`` (the
            reference's relative_enc), ignored otherwise.
        offset_map: how e becomes an offset (``make_offset_map``).
        relative: e = e_pseudo - e_target when True, e = e_pseudo when False.

    Returns:
        (N, D) float32 offset; exactly 0 where e = 0. Differentiable w.r.t. the encodings.
    """
    _check_codes(e_pseudo, e_target, relative, offset_map.generator.style_dim)
    e = e_pseudo - e_target if relative else e_pseudo
    return offset_map(e)


def offset_to_latent(
    w_target: torch.Tensor,
    e_pseudo: torch.Tensor,
    e_target: torch.Tensor | None,
    offset_map: OffsetMap,
    relative: bool = True,
    return_offset: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Latents of the pseudo-samples: ``w = w_target + offset_map(e)``.

    Args:
        w_target: the target's latent, (1 or N, D) w or (1 or N, n_latent, D) w+; a batch of 1 is
            shared by all N pseudo-samples (the reference's instance mode).
        e_pseudo, e_target, offset_map, relative: as in ``latent_offset``.
        return_offset: also return the (N, D) W offset (for the lam_regular * mean(offset^2) term).

    Returns:
        w: (N, D) or (N, n_latent, D) float32, the same offset added to every layer's latent;
        or (w, offset) when ``return_offset``. With e = 0, w equals w_target exactly.
    """
    generator = offset_map.generator
    _check_codes(e_pseudo, e_target, relative, generator.style_dim)
    check_w_target(w_target, generator)
    n = e_pseudo.shape[0]
    if w_target.shape[0] not in (1, n):
        raise ValueError(f"w_target has batch {w_target.shape[0]}; it must be 1 or e_pseudo's batch {n}")
    offset = latent_offset(e_pseudo, e_target, offset_map, relative)
    step = offset if w_target.dim() == 2 else offset[:, None, :]
    w = w_target.to(offset.dtype) + step
    return (w, offset) if return_offset else w


def invert_grouped(
    encoder: torch.nn.Module,
    images: torch.Tensor,
    e_target: torch.Tensor | None,
    latent: torch.Tensor,
    noise: list[torch.Tensor],
    offset_map: OffsetMap,
    relative: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Invert B images per instance through E and G (step 2's projection and the GAN-refined exports).

    images: (N*B, 3, S, S) float in [-1, 1], rows i*B .. i*B+B-1 belonging to instance i;
    e_target: (N, D) E(target image) of each instance (required when ``relative``, else None);
    latent: (N, n_latent, D) w+ of the instances; noise: num_layers maps (N or 1, 1, r, r), the
    instances' fixed noise; offset_map, relative: as in ``latent_offset`` (the GAN is offset_map's).
    Returns (images (N*B, 3, R, R) float in [-1, 1] at the GAN's size R, offsets (N*B, D)).
    """
    n = latent.shape[0]
    b = images.shape[0] // n
    anchor = e_target.repeat_interleave(b, 0) if relative else None
    w, offset = offset_to_latent(
        latent.repeat_interleave(b, 0), encoder(images), anchor, offset_map, relative, return_offset=True
    )
    rows = [x.expand(n, *x.shape[1:]).repeat_interleave(b, 0) for x in noise]
    return offset_map.generator.synthesis(w, noise=rows, randomize_noise=False).clamp(-1.0, 1.0), offset


def check_w_target(w: torch.Tensor, generator: Generator) -> None:
    """Raise ValueError unless w is (N, D) or (N, n_latent, D) for this generator."""
    dim, n_latent = generator.style_dim, generator.n_latent
    ok = (w.dim() == 2 and w.shape[1] == dim) or (w.dim() == 3 and w.shape[1:] == (n_latent, dim))
    if not ok:
        raise ValueError(
            f"w_target must be (N, {dim}) or (N, {n_latent}, {dim}) for this generator, got {tuple(w.shape)}"
        )


def w_target_from_z(generator: Generator, z: torch.Tensor) -> torch.Tensor:
    """w_target of sampled instances: z (N, D) ~ N(0, I) -> w (N, n_latent, D) float32 (the same
    w for every layer, as the generator uses it), no grad."""
    if z.dim() != 2 or z.shape[1] != generator.style_dim:
        raise ValueError(f"z must be (N, {generator.style_dim}), got {tuple(z.shape)}")
    with torch.no_grad():
        w = generator.get_latent(z.to(_device(generator)))
    return w[:, None, :].expand(-1, generator.n_latent, -1).contiguous()


def w_target_from_artifact(
    path: str | Path,
    generator: Generator,
    index: slice | list[int] | None = None,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """w_target of projected images: dataset 'latent' of a 'latents' artifact (``gan2shape
    project``), or of any artifact given as a dataset latent (N, n_latent, D).

    Args:
        path: the artifact file (kind 'latents').
        generator: the GAN the latents belong to (shapes are checked against it).
        index: rows to read (None = all).
        device: where to put them (None = the generator's device).

    Returns:
        (N, n_latent, D) float32.
    """
    from gan2shape.artifacts import read_artifact

    with read_artifact(path, "latents", require=("latent",)) as art:
        rows = index if not isinstance(index, list) else np.asarray(index)
        w = torch.from_numpy(np.asarray(art.array("latent", rows), dtype=np.float32))
    if w.dim() != 3:
        raise ArtifactError(
            f"{path}: dataset 'latent' must be (N, n_latent, D), got {tuple(w.shape)}; make it with `gan2shape project`"
        )
    try:
        check_w_target(w, generator)
    except ValueError as exc:
        raise ArtifactError(
            f"{path}: {exc}; was it projected with another generator? Project the images again with this checkpoint"
        ) from None
    return w.to(device if device is not None else _device(generator))

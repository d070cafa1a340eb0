"""Losses of GAN2Shape (docs/METHOD.md section 3), all returning one value per image, shape (N,).

Per-image values let per-instance training sum the losses of independent instances (each
instance's gradient then depends on its own images only) and joint training take their mean.

- masked_l1: the photometric L1 of steps 1-3.
- smoothness: the reference's second-order smoothness of depth and of diffuse shading.
- PerceptualLoss / make_perceptual: perceptual distance from a source that exists offline.
- feature_matching: L1 between discriminator features (step 2).
- offset_regulariser: mean(offset^2) of the latent offset (step 2).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gan2shape.render._checks import check_tensor

__all__ = [
    "masked_l1",
    "smoothness",
    "feature_matching",
    "offset_regulariser",
    "PerceptualLoss",
    "PERCEPTUAL_SOURCES",
    "make_perceptual",
]

log = logging.getLogger(__name__)

PERCEPTUAL_SOURCES = ("discriminator", "lpips", "none")
# The VGG16 weights lpips.LPIPS(net="vgg") asks torchvision for; torchvision downloads them into
# torch.hub's cache unless present, which we must never trigger.
_VGG16_WEIGHTS = "vgg16-397923af.pth"


def _pool_mask(mask: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, 1, H, W) mask -> (N, 1, height, width) by area averaging (the reference's avg_pool)."""
    if mask.shape[-2:] == (height, width):
        return mask
    return F.adaptive_avg_pool2d(mask, (height, width))


def _masked_mean(err: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Per-image mean of err (N, C, H, W), weighted by mask (N, 1, h, w) pooled to H x W."""
    if mask is None:
        return err.flatten(1).mean(1)
    weight = _pool_mask(mask.to(err.dtype), err.shape[-2], err.shape[-1]).expand_as(err)
    # eps: an all-zero mask gives a loss of 0 rather than NaN.
    return (err * weight).flatten(1).sum(1) / weight.flatten(1).sum(1).clamp(min=1e-8)


def _check_mask(mask: torch.Tensor | None, dims: dict[str, int]) -> None:
    if mask is not None:
        check_tensor("mask", mask, ("N", 1, "H", "W"), dims)


def masked_l1(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image masked L1: sum(|a - b| * m) / sum(m) over channels and pixels.

    a, b: (N, C, H, W) float images (e.g. in [-1, 1]); mask: (N, 1, H, W) float in [0, 1] or None
    (all ones), broadcast over channels as in the reference's photometric_loss.
    Returns (N,) >= 0; 0 for an image whose mask is all zero.
    """
    dims = check_tensor("a", a, ("N", "C", "H", "W"))
    check_tensor("b", b, ("N", "C", "H", "W"), dims)
    _check_mask(mask, dims)
    return _masked_mean((a - b).abs(), mask)


def smoothness(x: torch.Tensor) -> torch.Tensor:
    """The reference's smooth_loss per image: mean |second differences| of a map.

    x: (N, H, W) or (N, C, H, W) float (depth, or diffuse shading (N, 1, H, W)), H, W >= 3.
    With dx, dy the forward differences along columns and rows, returns (N,):
    mean|d2x/dx2| + mean|d2x/dxdy| + mean|d2x/dydx| + mean|d2x/dy2| (each mean over its own
    valid region and the channels). Zero for any affine map a + b*col + c*row; a quadratic
    q*col^2 gives 2|q|. (The reference averages over the batch too; we keep images apart.)
    """
    if isinstance(x, torch.Tensor) and x.dim() == 3:
        x = x.unsqueeze(1)
    dims = check_tensor("x", x, ("N", "C", "H", "W"))
    if dims["H"] < 3 or dims["W"] < 3:
        raise ValueError(f"smoothness needs maps of at least 3x3 pixels, got {tuple(x.shape)}")
    dx = x[..., :, 1:] - x[..., :, :-1]
    dy = x[..., 1:, :] - x[..., :-1, :]
    terms = (
        dx[..., :, 1:] - dx[..., :, :-1],  # d/dx of dx
        dx[..., 1:, :] - dx[..., :-1, :],  # d/dy of dx
        dy[..., :, 1:] - dy[..., :, :-1],  # d/dx of dy
        dy[..., 1:, :] - dy[..., :-1, :],  # d/dy of dy
    )
    return sum(t.abs().flatten(1).mean(1) for t in terms)


def feature_matching(
    feats_a: Sequence[torch.Tensor], feats_b: Sequence[torch.Tensor], mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Discriminator feature matching (the reference's DiscriminatorLoss) per image.

    feats_a, feats_b: equal-length sequences of (N, C_k, H_k, W_k) float features (e.g.
    Discriminator.features(img, 4) of the projected and of the pseudo sample; detach the target's).
    mask: (N, 1, H, W) float in [0, 1] or None, area-pooled to each feature's resolution.
    Returns (N,) = sum over k of the (masked) mean |a_k - b_k|.
    """
    if len(feats_a) != len(feats_b) or not feats_a:
        raise ValueError(f"feature lists must be non-empty and of equal length, got {len(feats_a)} and {len(feats_b)}")
    total = None
    for k, (fa, fb) in enumerate(zip(feats_a, feats_b)):
        dims = check_tensor(f"feats_a[{k}]", fa, ("N", "C", "H", "W"))
        check_tensor(f"feats_b[{k}]", fb, ("N", "C", "H", "W"), dims)
        if mask is not None:
            check_tensor("mask", mask, (dims["N"], 1, None, None))
        term = _masked_mean((fa - fb).abs(), mask)
        total = term if total is None else total + term
    return total


def offset_regulariser(offset: torch.Tensor) -> torch.Tensor:
    """Per-sample mean(offset^2) of latent offsets: offset (N, D) float -> (N,) >= 0."""
    check_tensor("offset", offset, ("N", "D"))
    return offset.pow(2).mean(1)


def _unit_channels(f: torch.Tensor) -> torch.Tensor:
    """Scale each spatial position's channel vector to unit length (LPIPS's normalize_tensor)."""
    # clamp_min: sqrt's gradient at an all-zero channel vector is inf (0 * inf = NaN in backward);
    # zero features are common where masked-out (zeroed) images meet a discriminator with zero biases.
    return f / (f.pow(2).sum(1, keepdim=True).clamp_min(1e-20).sqrt() + 1e-10)


class PerceptualLoss(nn.Module):
    """Perceptual distance between two image batches, one value per image.

    source:
      'discriminator': features of the GAN's own discriminator (first ``n_blocks`` blocks of
         Discriminator.features), each position's channel vector scaled to unit length, squared
         difference summed over channels and averaged over (masked) positions, summed over blocks:
         LPIPS's formula with all channel weights equal to one. Images are resized (bilinear) to the
         discriminator's size. The discriminator is frozen (requires_grad False): GAN2Shape never
         trains it; gradients still flow to the images. Keep n_blocks below the discriminator's
         n_blocks: the last block (final conv) sees minibatch statistics that mix images.
      'lpips': LPIPS-VGG (the reference's choice); needs the ``lpips`` package, torchvision and the
         VGG16 weights already in torch.hub's cache; otherwise construction fails with a message.
      'none': always 0 (lam_perc effectively 0).
    forward(a, b, mask=None): a, b (N, 3, H, W) in [-1, 1]; mask (N, 1, H, W) in [0, 1] or None.
      The reference multiplies both images by the mask before the perceptual net; we do the same
      and also weight positions by the pooled mask. Returns (N,) >= 0, exactly 0 when a == b.
    """

    def __init__(
        self, source: str = "discriminator", discriminator: nn.Module | None = None, n_blocks: int = 4
    ) -> None:
        super().__init__()
        if source not in PERCEPTUAL_SOURCES:
            raise ValueError(f"perceptual source must be one of {PERCEPTUAL_SOURCES}, got {source!r}")
        self.source = source
        self.n_blocks = n_blocks
        self.net: nn.Module | None = None
        if source == "discriminator":
            if discriminator is None or not hasattr(discriminator, "features"):
                raise ValueError(
                    "perceptual source 'discriminator' needs the GAN's Discriminator (with .features); "
                    "pass discriminator=... or use source='none'"
                )
            max_blocks = getattr(discriminator, "n_blocks", None)
            if (
                isinstance(n_blocks, bool)
                or not isinstance(n_blocks, int)
                or n_blocks < 1
                or (max_blocks is not None and n_blocks > max_blocks)
            ):
                raise ValueError(
                    f"n_blocks must be an int in [1, {max_blocks}] for this discriminator, got {n_blocks!r}"
                )
            discriminator.requires_grad_(False)
            self.net = discriminator
        elif source == "lpips":
            self.net = _load_lpips()

    def forward(self, a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        dims = check_tensor("a", a, ("N", 3, "H", "W"))
        check_tensor("b", b, ("N", 3, "H", "W"), dims)
        _check_mask(mask, dims)
        if self.source == "none":
            return a.new_zeros(dims["N"])
        if mask is not None:
            a, b = a * mask, b * mask
        if self.source == "lpips":
            # LPIPS returns (N, 1, 1, 1) spatially averaged distances; it takes no mask.
            return self.net(a, b, normalize=False).reshape(dims["N"])
        size = self.net.size
        both = torch.cat([a, b], 0)
        if both.shape[-1] != size:
            both = F.interpolate(both, size=(size, size), mode="bilinear", align_corners=False)
        total = a.new_zeros(dims["N"])
        for f in self.net.features(both, self.n_blocks):
            fa, fb = _unit_channels(f).chunk(2, dim=0)
            total = total + _masked_mean((fa - fb).pow(2).sum(1, keepdim=True), mask)
        return total


def _load_lpips() -> nn.Module:
    """LPIPS-VGG without any download; raises RuntimeError naming what is missing otherwise."""
    missing = [name for name in ("lpips", "torchvision") if importlib.util.find_spec(name) is None]
    hub_weights = os.path.join(torch.hub.get_dir(), "checkpoints", _VGG16_WEIGHTS)
    if not os.path.isfile(hub_weights):
        missing.append(f"the VGG16 weights file {hub_weights}")
    if missing:
        raise RuntimeError(
            "perceptual source 'lpips' is unavailable: missing "
            + ", ".join(missing)
            + ". Nothing is downloaded at run time: install the lpips package (and a torchvision matching "
            "this torch) and put the VGG16 weights in torch.hub's cache, or use perceptual source "
            "'discriminator' (the GAN's own discriminator features) or 'none'."
        )
    import lpips  # noqa: PLC0415 (optional dependency)

    net = lpips.LPIPS(net="vgg", verbose=False)
    net.requires_grad_(False)
    return net


def make_perceptual(source: str, discriminator: nn.Module | None = None, n_blocks: int = 4) -> PerceptualLoss:
    """Build the perceptual loss for ``source`` ('discriminator', 'lpips' or 'none') and log which runs."""
    loss = PerceptualLoss(source, discriminator=discriminator, n_blocks=n_blocks)
    if source == "discriminator":
        log.info("perceptual loss: GAN discriminator features, first %d blocks, unit-channel L2", n_blocks)
    elif source == "lpips":
        log.info("perceptual loss: LPIPS-VGG")
    else:
        log.info("perceptual loss: none (always 0)")
    return loss

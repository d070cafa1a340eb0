"""Unsup3d (Wu, Rupprecht and Vedaldi, CVPR 2020) on this project's renderer and networks.

The photo-geometric autoencoder, trained on images alone: from one image the depth, albedo, view,
light and confidence nets predict a canonical depth d and albedo a, a view, a light and two confidence
maps. The canonical frame is taken to be left-right symmetric: the image is rebuilt twice, from (d, a)
and from their mirror images (flip(d), flip(a)), both shaded with the same light and seen from the same
view. Loss, with sigma the confidence maps (Laplace negative log-likelihood, unsup3d's photometric_loss):

    L(I_hat, I, sigma) = mean_m( sqrt(2) |I_hat - I| / sigma + log sigma )
    total = L(recon, I, sigma) + lam_flip * L(recon_flip, I, sigma_flip)

with m the pixels both reconstructions cover. Differences from the public code (docs/baselines.md): no
perceptual (VGG) term and so no second, quarter-resolution confidence map; the renderer is ours
(gan2shape.render: border padding and align_corners=True in the texture lookup), and decode_depth sets
the border columns to the border depth exactly (the reference blends them). Everything else (networks,
ranges, Adam with weight decay 5e-4 at lr 1e-4, batch 64) follows its synface configuration.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gan2shape.config import RenderConfig, Unsup3dConfig
from gan2shape.model import AlbedoNet, DepthNet, LightNet, ViewNet, decode_depth, decode_light, decode_view, default_nf
from gan2shape.peers.data import load_heads_set, to_unit
from gan2shape.peers.training import PeerTrainer, fast_cuda, run_training
from gan2shape.render import Camera, depth_to_normals, render_view, shade

__all__ = [
    "EPS",
    "ConfidenceNet",
    "photometric_loss",
    "flip_canonical",
    "build_unsup3d",
    "unsup3d_forward",
    "Unsup3dTrainer",
    "train_unsup3d",
]

EPS = 1e-7  # unsup3d's epsilon in the confidence-weighted loss


class ConfidenceNet(nn.Module):
    """unsup3d's ConfNet without its perceptual head: image (N, 3, S, S) in [-1, 1] -> (N, 2, S, S) > 0.

    Channel 0 is sigma of the image's reconstruction, channel 1 of the flipped one (softplus output).
    Down: conv4x4/2 + GroupNorm + LeakyReLU(0.2) stages (the last without GroupNorm) to 4x4, conv4x4
    (valid) to zdim + ReLU; up: transposed conv to 4x4, transposed conv4x4/2 stages (GroupNorm + ReLU)
    back to S, conv5x5 to 2 channels, softplus. At S = 64 with nf 64, zdim 128 it is the reference's
    ``out_net1`` path layer for layer.
    """

    def __init__(self, image_size: int, nf: int | None = None, zdim: int = 128) -> None:
        super().__init__()
        if image_size < 16 or image_size & (image_size - 1):
            raise ValueError(f"ConfidenceNet: image_size must be a power of two >= 16, got {image_size}")
        n = int(math.log2(image_size)) - 2
        nf = default_nf(image_size) if nf is None else nf
        gn = 8 if image_size >= 128 else 16
        if nf % gn:
            raise ValueError(f"ConfidenceNet: nf={nf} must be a multiple of {gn} (GroupNorm groups)")
        self.image_size = image_size
        ch = [nf * 2**k for k in range(n)]
        layers: list[nn.Module] = []
        prev = 3
        for k in range(n):
            layers.append(nn.Conv2d(prev, ch[k], 4, stride=2, padding=1, bias=False))
            if k < n - 1:
                layers.append(nn.GroupNorm(gn * 2**k, ch[k]))
            layers.append(nn.LeakyReLU(0.2))
            prev = ch[k]
        layers += [
            nn.Conv2d(prev, zdim, 4, stride=1, padding=0, bias=False),
            nn.ReLU(),
            nn.ConvTranspose2d(zdim, ch[-1], 4, stride=1, padding=0, bias=False),
            nn.ReLU(),
        ]
        for k in range(n - 2, -1, -1):
            layers += [
                nn.ConvTranspose2d(ch[k + 1], ch[k], 4, stride=2, padding=1, bias=False),
                nn.GroupNorm(gn * 2**k, ch[k]),
                nn.ReLU(),
            ]
        layers += [
            nn.ConvTranspose2d(nf, nf, 4, stride=2, padding=1, bias=False),
            nn.GroupNorm(gn, nf),
            nn.ReLU(),
            nn.Conv2d(nf, 2, 5, padding=2, bias=False),
            nn.Softplus(),
        ]
        self.network = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != (3, self.image_size, self.image_size):
            raise ValueError(
                f"ConfidenceNet expects (N, 3, {self.image_size}, {self.image_size}), got {tuple(x.shape)}"
            )
        return self.network(x)


def photometric_loss(recon: Tensor, image: Tensor, mask: Tensor, sigma: Tensor | None = None) -> Tensor:
    """unsup3d's confidence-weighted L1 over a batch (one scalar, pixels pooled over the batch).

    recon, image: (N, C, H, W) float; mask: (N, 1, H, W) {0, 1} float; sigma: (N, 1, H, W) > 0 or None.
    Returns sum(m * e) / sum(m) with e = |recon - image| (no sigma) or sqrt(2) |recon - image| / (sigma + EPS)
    + log(sigma + EPS): for a constant sigma, minimal at sigma = sqrt(2) * the masked mean of |recon - image|.
    """
    if recon.shape != image.shape or recon.dim() != 4:
        raise ValueError(f"recon and image must be equal (N, C, H, W), got {tuple(recon.shape)}, {tuple(image.shape)}")
    if mask.shape != (recon.shape[0], 1, *recon.shape[2:]):
        raise ValueError(f"mask must be (N, 1, H, W) like the images, got {tuple(mask.shape)}")
    err = (recon - image).abs()
    if sigma is not None:
        if sigma.shape != mask.shape:
            raise ValueError(f"sigma must be (N, 1, H, W) like the mask, got {tuple(sigma.shape)}")
        err = err * 2**0.5 / (sigma + EPS) + (sigma + EPS).log()
    m = mask.expand_as(err)
    return (err * m).sum() / m.sum().clamp(min=1.0)


def flip_canonical(depth: Tensor, albedo: Tensor) -> tuple[Tensor, Tensor]:
    """The canonical pair and its mirror image, stacked: depth (N, S, S) -> (2N, S, S) = [d, flip(d)];
    albedo (N, 3, S, S) -> (2N, 3, S, S) = [a, flip(a)] (left-right flips; a symmetric map is its own flip)."""
    if depth.dim() != 3 or albedo.dim() != 4 or albedo.shape[0] != depth.shape[0]:
        raise ValueError(
            f"depth (N, S, S) and albedo (N, 3, S, S) expected, got {tuple(depth.shape)}, {tuple(albedo.shape)}"
        )
    return torch.cat([depth, depth.flip(2)]), torch.cat([albedo, albedo.flip(3)])


def build_unsup3d(config: Unsup3dConfig) -> nn.ModuleDict:
    """Depth, albedo (EDDeconv, nf), view, light (encoders, enc_nf) and confidence nets (use_conf)."""
    s = config.image_size
    nf = default_nf(s) if config.nf is None else config.nf
    enc_nf = nf // 2 if config.enc_nf is None else config.enc_nf
    nets = {
        "depth": DepthNet(s, nf=nf, zdim=config.zdim),
        "albedo": AlbedoNet(s, nf=nf, zdim=config.zdim),
        "view": ViewNet(s, nf=enc_nf),
        "light": LightNet(s, nf=enc_nf),
    }
    if config.use_conf:
        nets["conf"] = ConfidenceNet(s, nf=nf, zdim=config.conf_zdim)
    return nn.ModuleDict(nets)


def unsup3d_forward(nets: nn.ModuleDict, image: Tensor, camera: Camera, config: Unsup3dConfig) -> dict[str, Tensor]:
    """The photo-geometric autoencoder on a batch (module docstring).

    image: (B, 3, S, S) in [-1, 1], S = camera.image_size. Returns:
      canon_depth (B, S, S) in [min_depth, max_depth]; canon_albedo (B, 3, S, S) in [-1, 1];
      view (B, 6) physical; recon (2B, 3, S, S): the image rebuilt from the canonical pair (rows :B)
      and from its flip (rows B:), zero where ``mask`` is 0; recon_depth (2B, S, S) the depths seen from
      the view (clamped, camera.depth_clamp); valid (2B, 1, S, S) {0, 1} each reconstruction's covered
      pixels; mask (2B, 1, S, S) {0, 1} detached, pixels both cover (repeated); sigma (B, 2, S, S) > 0
      or None without the confidence net.
    """
    b = image.shape[0]
    canon_depth = decode_depth(nets["depth"](image), camera)
    canon_albedo = nets["albedo"](image)
    view = decode_view(
        nets["view"](image), config.xyz_rotation_range_deg, config.xy_translation_range, config.z_translation_range
    )
    ambient, diffuse, light_dir = decode_light(nets["light"](image))
    depth2, albedo2 = flip_canonical(canon_depth, canon_albedo)
    normals = depth_to_normals(depth2, camera)
    texture, _ = shade(albedo2, normals, ambient.repeat(2), diffuse.repeat(2), light_dir.repeat(2, 1))
    rendered = render_view(texture, depth2, view.repeat(2, 1), camera)
    both = (rendered.mask[:b] * rendered.mask[b:]).repeat(2, 1, 1, 1).detach()
    sigma = nets["conf"](image) if "conf" in nets else None
    return {
        "canon_depth": canon_depth,
        "canon_albedo": canon_albedo,
        "view": view,
        "recon": rendered.image * both,
        "recon_depth": rendered.depth,
        "valid": rendered.mask,
        "mask": both,
        "sigma": sigma,
    }


class Unsup3dTrainer(PeerTrainer):
    """Unsup3d on in-memory heads images (no depth); camera: params.yaml's render section at image_size."""

    kind = "unsup3d"
    arch_keys = ("image_size", "nf", "enc_nf", "zdim", "conf_zdim", "use_conf")

    @staticmethod
    def build_networks(config: Unsup3dConfig) -> nn.ModuleDict:
        return build_unsup3d(config)

    def losses(self, rows: Tensor) -> dict[str, Tensor]:
        image = to_unit(self.data.image[rows])
        b = image.shape[0]
        out = unsup3d_forward(self.nets, image, self.camera, self.config)
        sigma = out["sigma"]
        l1 = photometric_loss(out["recon"][:b], image, out["mask"][:b], None if sigma is None else sigma[:, :1])
        l1_flip = photometric_loss(out["recon"][b:], image, out["mask"][b:], None if sigma is None else sigma[:, 1:])
        return {"l1": l1, "l1_flip": l1_flip, "loss": l1 + self.config.lam_flip * l1_flip}


def unsup3d_camera(config: Unsup3dConfig, render: RenderConfig) -> Camera:
    """The camera Unsup3d assumes: the render section's fov and depth range at config.image_size."""
    return Camera(config.image_size, render.fov_deg, render.min_depth, render.max_depth, render.rot_center_depth)


def train_unsup3d(
    config: Unsup3dConfig,
    render: RenderConfig,
    data_path: str | Path,
    out_dir: str | Path,
    *,
    device: torch.device | str,
    max_steps: int | None = None,
    max_seconds: float | None = None,
    progress: bool = True,
    params_text: str | None = None,
) -> dict[str, Any]:
    """Train (or continue) Unsup3d on the images of a heads split (``data_path``, e.g. the train.h5 of
    gan2shape make-heads; its depth is not read); writes out_dir/checkpoint.pt and log.jsonl."""
    device = torch.device(device)
    fast_cuda(device)
    data = load_heads_set(data_path, config.image_size, device)
    trainer = Unsup3dTrainer(config, data, unsup3d_camera(config, render), device)
    return run_training(
        trainer, out_dir, max_steps=max_steps, max_seconds=max_seconds, progress=progress, params_text=params_text
    )

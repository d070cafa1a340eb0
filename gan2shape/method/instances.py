"""The targets of one shard: GAN latents, fixed noise and the GAN's images (artifact kind 'instances').

Two sources (docs/METHOD.md section 3; docs/DESIGN.md "Data flow"):

- sampled: z ~ N(0, I) drawn from a seeded ``torch.Generator`` -> w+ (the same w on every layer)
  and per-instance noise maps drawn from the same generator;
- projected: a 'latents' artifact written by ``gan2shape project`` (datasets ``latent``
  (N, n_latent, D) and ``noise_<i>`` (N, 1, r, r)).

Either way the GAN renders the target images with that fixed noise (randomize_noise False) and
``instances.h5`` stores ``image`` (N, 3, S, S) float32 in [-1, 1] at the method's image size S,
``latent`` (N, n_latent, D) and ``noise_<i>`` (N, 1, r_i, r_i), so that later steps never need the
source again. Optionally it also stores ``mask`` (N, S, S) uint8 {0, 1}: user-given foreground masks
(``gan2shape sample-instances --masks``, read by ``gan2shape.method.masks``) that place the shape
prior when ``method.prior.box_source`` is 'mask'.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from gan2shape.artifacts import Artifact, read_artifact, write_artifact
from gan2shape.errors import ArtifactError
from gan2shape.method.latents import check_w_target, w_target_from_z
from gan2shape.stylegan2.model import Generator

__all__ = [
    "KIND",
    "Instances",
    "resize_images",
    "synthesize",
    "sample_instances",
    "instances_from_latents",
    "write_instances",
    "read_instances",
    "read_instance_masks",
]

KIND = "instances"


@dataclass
class Instances:
    """One shard's targets.

    ids: N strings. image: (N, 3, S, S) float32 in [-1, 1]. latent: (N, n_latent, D) float32 w+.
    noise: list of num_layers tensors (N, 1, r_i, r_i) float32 (the GAN's fixed noise per instance).
    mask: (N, S, S) uint8 {0, 1} foreground masks, or None (optional; the prior's 'mask' box source).
    """

    ids: list[str]
    image: torch.Tensor
    latent: torch.Tensor
    noise: list[torch.Tensor]
    mask: torch.Tensor | None = None

    @property
    def n(self) -> int:
        return len(self.ids)

    def subset(self, rows: torch.Tensor) -> Instances:
        """The instances at ``rows`` (K,) int64 indices, in that order (a joint-mode minibatch)."""
        r = rows.to(self.image.device)
        return Instances(
            [self.ids[i] for i in rows.tolist()],
            self.image[r],
            self.latent[r],
            [x[r] if x.shape[0] == self.n else x for x in self.noise],
            None if self.mask is None else self.mask[r],
        )

    def to(self, device: torch.device | str) -> Instances:
        return Instances(
            self.ids,
            self.image.to(device),
            self.latent.to(device),
            [x.to(device) for x in self.noise],
            None if self.mask is None else self.mask.to(device),
        )


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, size, size), bilinear with antialiasing; identity when already that size."""
    if images.dim() != 4:
        raise ValueError(f"resize_images expects (N, C, H, W), got {tuple(images.shape)}")
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(
        images, size=(size, size), mode="bilinear", align_corners=False, antialias=images.shape[-1] > size
    )


def _check_noise(noise: list[torch.Tensor], generator: Generator, n: int) -> None:
    if len(noise) != generator.num_layers:
        raise ValueError(f"noise must hold {generator.num_layers} maps for this generator, got {len(noise)}")
    for i, x in enumerate(noise):
        r = getattr(generator.noises, f"noise_{i}").shape[-1]
        if tuple(x.shape) not in ((n, 1, r, r), (1, 1, r, r)):
            raise ValueError(f"noise_{i} must be ({n}, 1, {r}, {r}) (or (1, 1, {r}, {r})), got {tuple(x.shape)}")


@torch.no_grad()
def synthesize(
    generator: Generator, latent: torch.Tensor, noise: list[torch.Tensor], image_size: int, batch: int = 64
) -> torch.Tensor:
    """GAN images of w+ latents with fixed noise, resized to the method's size.

    latent: (N, n_latent, D); noise: num_layers maps (N or 1, 1, r, r). Returns (N, 3, image_size,
    image_size) float32 in [-1, 1] (clamped), on the latent's device. Runs in batches of ``batch``.
    """
    check_w_target(latent, generator)
    if latent.dim() != 3:
        raise ValueError(f"latent must be w+ (N, n_latent, D), got {tuple(latent.shape)}")
    n = latent.shape[0]
    _check_noise(noise, generator, n)
    out = []
    for s in range(0, n, batch):
        rows = slice(s, min(n, s + batch))
        nz = [x[rows] if x.shape[0] == n else x for x in noise]
        img = generator.synthesis(latent[rows], noise=nz, randomize_noise=False).clamp(-1.0, 1.0)
        out.append(resize_images(img, image_size).clamp(-1.0, 1.0))
    return torch.cat(out)


def sample_instances(generator: Generator, n: int, seed: int, image_size: int) -> Instances:
    """n instances from z ~ N(0, I) and noise ~ N(0, I), both drawn from a CPU torch.Generator
    seeded with ``seed`` (so the result is the same on every device). Images (n, 3, S, S) in [-1, 1]."""
    if n < 1:
        raise ValueError(f"sample_instances: n must be >= 1, got {n}")
    device = generator.input.input.device
    rng = torch.Generator().manual_seed(int(seed))
    z = torch.randn(n, generator.style_dim, generator=rng)
    noise = [
        torch.randn(n, 1, *getattr(generator.noises, f"noise_{i}").shape[-2:], generator=rng)
        for i in range(generator.num_layers)
    ]
    latent = w_target_from_z(generator, z.to(device))
    noise = [x.to(device) for x in noise]
    ids = [f"s{seed}_{i:05d}" for i in range(n)]
    return Instances(ids, synthesize(generator, latent, noise, image_size), latent, noise)


def instances_from_latents(
    generator: Generator, path: str | Path, image_size: int, limit: int | None = None
) -> Instances:
    """Instances from a 'latents' artifact (``gan2shape project``): its latent and noise_<i>, the first
    ``limit`` rows (None: all). Images are re-synthesised with the stored noise."""
    device = generator.input.input.device
    names = ["latent"] + [f"noise_{i}" for i in range(generator.num_layers)]
    with read_artifact(path, "latents", require=names) as art:
        rows = slice(0, limit) if limit is not None else None
        ids = art.ids[rows] if rows is not None else list(art.ids)
        latent = art.tensor("latent", rows, device).float()
        noise = [art.tensor(f"noise_{i}", rows, device).float() for i in range(generator.num_layers)]
    try:
        check_w_target(latent, generator)
        _check_noise(noise, generator, latent.shape[0])
    except ValueError as exc:
        raise ArtifactError(
            f"{path}: {exc}; was it projected with another generator? Project the images with method.checkpoint's GAN"
        ) from None
    return Instances(list(ids), synthesize(generator, latent, noise, image_size), latent, noise)


def write_instances(
    path: str | Path, inst: Instances, *, params_text: str | None = None, attrs: dict | None = None
) -> Path:
    """Write ``inst`` as an 'instances' artifact (atomic); ``mask`` only when inst.mask is not None."""
    arrays = {"image": inst.image.float().cpu(), "latent": inst.latent.float().cpu()}
    arrays.update({f"noise_{i}": x.expand(inst.n, *x.shape[1:]).float().cpu() for i, x in enumerate(inst.noise)})
    if inst.mask is not None:
        s = inst.image.shape[-1]
        if tuple(inst.mask.shape) != (inst.n, s, s):
            raise ValueError(
                f"write_instances({path}): mask must be ({inst.n}, {s}, {s}) like the images, "
                f"got {tuple(inst.mask.shape)}"
            )
        arrays["mask"] = (inst.mask > 0).to(torch.uint8).cpu()
    return write_artifact(
        path,
        KIND,
        arrays,
        ids=inst.ids,
        params_text=params_text,
        attrs={"n_noise": len(inst.noise), "image_size": int(inst.image.shape[-1]), **(attrs or {})},
    )


def _read_mask(art: Artifact, path: str | Path, image_size: int, device: torch.device | str) -> torch.Tensor | None:
    """An open 'instances' artifact's optional mask as (N, S, S) uint8 {0, 1}, or None; checks its size."""
    if "mask" not in art.names:
        return None
    if art.shape("mask")[1:] != (image_size, image_size):
        raise ArtifactError(
            f"{path}: dataset 'mask' has per-instance shape {art.shape('mask')[1:]}, expected "
            f"{(image_size, image_size)}; rebuild it with gan2shape sample-instances --masks"
        )
    return (art.tensor("mask", device=device) > 0).to(torch.uint8)


def read_instances(path: str | Path, image_size: int, device: torch.device | str = "cpu") -> Instances:
    """Read an 'instances' artifact; checks that its images are (N, 3, image_size, image_size) (and its
    optional mask (N, image_size, image_size), read as uint8 {0, 1})."""
    shapes = {"image": (3, image_size, image_size)}
    with read_artifact(path, KIND, require=("image", "latent"), shapes=shapes) as art:
        mask = _read_mask(art, path, image_size, device)
        n_noise = int(art.attrs["n_noise"])
        return Instances(
            list(art.ids),
            art.tensor("image", device=device).float(),
            art.tensor("latent", device=device).float(),
            [art.tensor(f"noise_{i}", device=device).float() for i in range(n_noise)],
            mask,
        )


def read_instance_masks(
    path: str | Path, image_size: int, device: torch.device | str = "cpu"
) -> tuple[list[str], torch.Tensor | None]:
    """Only the ids and the optional foreground masks of an 'instances' artifact, for steps that need
    nothing else (step 2a): (ids, mask (N, image_size, image_size) uint8 {0, 1} or None). The images,
    latents and noise maps stay on disk."""
    with read_artifact(path, KIND, require=("image", "latent")) as art:
        return list(art.ids), _read_mask(art, path, image_size, device)

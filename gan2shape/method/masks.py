"""User-given foreground masks for a shard's instances (the prior's 'mask' box source, the
object mask of the pseudo-samples: ``canonical_mask``, and the target's background behind them:
``fill_background``).

docs/METHOD.md section 3 places the ellipsoid prior over the object's mask bounding box; the reference
code takes the mask from a parsing network (BiSeNet, PSPNet), whose weights are not available
offline. Here the user provides the masks, in one of two forms:

- an HDF5 artifact (any kind, ``gan2shape.artifacts``) with a dataset ``mask`` of shape (M, H, W)
  or (M, 1, H, W), bool, uint8 ({0, 1} or {0, 255}) or float in [0, 1], whose instance ids include
  the shard's ids. The head benchmark's test.h5 is one: ``gan2shape project`` keeps its ids, so
  instances made from those latents find their masks by id;
- a folder of PNG files ``<id>.png``, one per instance id, grey or RGB (converted to grey).

Rows are matched by instance id, never by position. Foreground is ``value > 0.5`` after scaling to
[0, 1]. Masks of another size than the method's image size S are resized with nearest-neighbour
sampling ('nearest-exact': output pixel centres sample the nearest input pixel centre, so a
centred box stays centred), and the resize is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from gan2shape.artifacts import read_artifact
from gan2shape.errors import ArtifactError, InputError
from gan2shape.render import Camera
from gan2shape.render.warp import canon_to_view_grid

__all__ = ["read_masks", "resize_masks", "canonical_mask", "fill_background"]

log = logging.getLogger(__name__)


def _unit(mask: np.ndarray) -> np.ndarray:
    """Any mask array -> float32 in [0, 1] (uint8 holding values above 1 is read as 0..255)."""
    if mask.dtype == np.bool_:
        return mask.astype(np.float32)
    if np.issubdtype(mask.dtype, np.integer):
        scale = 255.0 if mask.size and mask.max() > 1 else 1.0
        return mask.astype(np.float32) / scale
    return mask.astype(np.float32)


def resize_masks(mask: torch.Tensor, size: int) -> torch.Tensor:
    """Binary masks (N, H, W) (any dtype, foreground > 0) -> (N, size, size) uint8 {0, 1}, nearest
    ('nearest-exact'); returned unchanged in value when already that size. H must equal W."""
    if mask.dim() != 3 or mask.shape[1] != mask.shape[2]:
        raise ValueError(f"resize_masks: masks must be square (N, H, H), got {tuple(mask.shape)}")
    binary = (mask > 0).to(torch.uint8)
    if mask.shape[-1] == size:
        return binary
    out = F.interpolate(binary[:, None].float(), size=(size, size), mode="nearest-exact")
    return out[:, 0].to(torch.uint8)


def _from_artifact(path: Path, ids: Sequence[str]) -> np.ndarray:
    with read_artifact(path, require=("mask",)) as art:
        missing = [i for i in ids if i not in art.ids]
        if missing:
            raise ArtifactError(
                f"{path} has no mask for instance id(s) {missing[:5]}{' ...' if len(missing) > 5 else ''} "
                f"({len(missing)} of {len(ids)}); it holds {art.n} ids, e.g. {art.ids[:3]}. Masks are matched "
                "by instance id: use the artifact the latents were projected from, or a folder of <id>.png"
            )
        index = {name: row for row, name in enumerate(art.ids)}
        shape = art.shape("mask")
        if not (len(shape) == 3 or (len(shape) == 4 and shape[1] == 1)):
            raise ArtifactError(
                f"{path}: dataset 'mask' must be (M, H, W) or (M, 1, H, W), got {shape}: give another mask source"
            )
        rows = [index[i] for i in ids]
        return _unit(np.asarray(art.array("mask", rows))).reshape(len(ids), shape[-2], shape[-1])


def _from_pngs(folder: Path, ids: Sequence[str]) -> np.ndarray:
    missing = [i for i in ids if not (folder / f"{i}.png").is_file()]
    if missing:
        raise InputError(
            f"{folder} lacks mask PNG(s) for instance id(s) {missing[:5]}{' ...' if len(missing) > 5 else ''} "
            f"({len(missing)} of {len(ids)}); expected one file <id>.png per instance, "
            f"e.g. {folder / (ids[0] + '.png')}"
        )
    masks = []
    for i in ids:
        try:
            with Image.open(folder / f"{i}.png") as im:
                masks.append(_unit(np.asarray(im.convert("L"))))
        except OSError as exc:  # PIL's UnidentifiedImageError too
            raise InputError(f"{folder / f'{i}.png'} cannot be read as an image ({exc}): replace it") from None
    sizes = sorted({m.shape for m in masks})
    if len(sizes) != 1:
        raise InputError(f"{folder}: the mask PNGs have different sizes {sizes}; give them one size")
    return np.stack(masks)


def read_masks(source: str | Path, ids: Sequence[str], image_size: int) -> torch.Tensor:
    """The masks of the instances ``ids`` from an artifact or a PNG folder (module docstring).

    Args:
        source: an HDF5 artifact with a dataset 'mask', or a folder of ``<id>.png``.
        ids: the shard's N instance ids, in the shard's order.
        image_size: S, the method's image size; other sizes are resized (nearest, logged).

    Returns:
        (N, S, S) uint8 {0, 1} on the CPU, row i the mask of ids[i].

    Raises:
        ArtifactError: an unreadable artifact, one without a 'mask' dataset or without a mask of an id.
        InputError: a PNG folder without a mask of an id, masks that are not square, or PNGs of
            different sizes.
    """
    source = Path(source)
    ids = [str(i) for i in ids]
    if not ids:
        raise ValueError("read_masks: no instance ids given")
    if source.is_dir():
        masks = _from_pngs(source, ids)
    else:
        masks = _from_artifact(source, ids)
    if masks.shape[1] != masks.shape[2]:
        raise InputError(
            f"{source}: masks are {masks.shape[1]}x{masks.shape[2]}; the method's images are square: give square masks"
        )
    binary = torch.from_numpy(np.ascontiguousarray(masks > 0.5))
    if binary.shape[-1] != image_size:
        log.info(
            "masks from %s are %dx%d: resized to method.image_size %d (nearest)",
            source,
            binary.shape[-2],
            binary.shape[-1],
            image_size,
        )
    out = resize_masks(binary, image_size)
    empty = [ids[k] for k in torch.nonzero(out.flatten(1).amax(1) == 0).flatten().tolist()]
    if empty:
        log.warning(
            "masks from %s: %d instance(s) have an empty mask (e.g. %s); the prior's 'mask' box source "
            "cannot place a box on them",
            source,
            len(empty),
            empty[:3],
        )
    return out


def canonical_mask(mask: torch.Tensor, canon_depth: torch.Tensor, view: torch.Tensor, camera: Camera) -> torch.Tensor:
    """Carry input-view foreground masks into the canonical frame (the reference's ``canon_mask``).

    Each canonical pixel takes the mask value (bilinear) where the canonical surface lands in the
    input view; pixels landing outside the image get 0. Rendering the result from another view
    (as a texture channel) gives the object's mask in that view: step 2's pseudo-samples and
    step 3's projected samples are masked by it, so that the background, which the canonical depth
    map does not model as a separate surface, does not enter those losses.

    mask: (N, S, S) bool/uint8/float in {0, 1} (or [0, 1]) in the input view; canon_depth: (N, S, S)
    canonical depth; view: (N, 6) physical input view (decode_view); camera: its Camera.
    Returns (N, 1, S, S) float32 in [0, 1] on canon_depth's device.
    """
    if mask.dim() != 3 or mask.shape != canon_depth.shape:
        raise ValueError(
            f"canonical_mask: mask must have shape {tuple(canon_depth.shape)} like the canonical "
            f"depth, got {tuple(mask.shape)}"
        )
    grid = canon_to_view_grid(canon_depth, view, camera)
    m = mask.to(device=canon_depth.device, dtype=torch.float32).unsqueeze(1)
    return F.grid_sample(m, grid.to(torch.float32), mode="bilinear", padding_mode="zeros", align_corners=True)


def fill_background(image: torch.Tensor, mask: torch.Tensor, dilate: int = 2) -> torch.Tensor:
    """The images with their object removed: the object's pixels filled smoothly from the background
    around it (step 2's pseudo-samples with ``method.pseudo_background`` 'target' show the turned
    object in front of this still background).

    The object is ``mask > 0.5`` grown by ``dilate`` pixels (so that its antialiased rim does not
    bleed into the fill). The fill is push-pull: the background is averaged over a pyramid of grids
    each 2x coarser (pixels weighted by their background fraction), and from the coarsest grid down
    each pixel keeps its own level's average in proportion to how much background that level holds
    there, taking the rest from the level above (bilinear). So every filled value is a weighted mean
    of background values (within their range), holes are filled from the nearest background first,
    and background pixels are returned unchanged. An image with no background pixel is filled with 0.

    image: (N, C, H, W) float; mask: (N, H, W) or (N, 1, H, W), foreground > 0.5; dilate >= 0 pixels.
    Returns (N, C, H, W), image's dtype and device.
    """
    if image.dim() != 4:
        raise ValueError(f"fill_background: image must be (N, C, H, W), got {tuple(image.shape)}")
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    if mask.shape != (image.shape[0], 1, *image.shape[-2:]):
        raise ValueError(
            f"fill_background: mask must be (N, H, W) or (N, 1, H, W) matching image {tuple(image.shape)}, "
            f"got {tuple(mask.shape)}"
        )
    if dilate < 0:
        raise ValueError(f"fill_background: dilate must be >= 0, got {dilate}")
    img = image.float()
    obj = (mask.to(img.device) > 0.5).float()
    if dilate:
        obj = F.max_pool2d(obj, 2 * dilate + 1, stride=1, padding=dilate)
    weight = 1.0 - obj
    levels = [(img * weight, weight)]
    while max(levels[-1][1].shape[-2:]) > 1:  # push: sums of background and its weight, 2x coarser each
        v, w = levels[-1]
        levels.append((F.avg_pool2d(v, 2, ceil_mode=True), F.avg_pool2d(w, 2, ceil_mode=True)))
    v, w = levels[-1]
    fill = v / w.clamp_min(1e-12) * (w > 0)
    for v, w in reversed(levels[:-1]):  # pull: own average where there is background, else the coarser fill
        up = F.interpolate(fill, size=v.shape[-2:], mode="bilinear", align_corners=False)
        own = v / w.clamp_min(1e-12)
        fill = w * own + (1.0 - w) * up
    return fill.to(image.dtype)

"""The heads a peer trains on or predicts: a split of ``gan2shape make-heads`` read into memory.

Images stay uint8 (a 20,000-image 64 px split is 246 MB, GT depth 328 MB as float32) on the training
device; batches are drawn there and converted per batch (:func:`to_unit`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gan2shape.artifacts import read_artifact
from gan2shape.errors import ArtifactError
from gan2shape.render import Camera

__all__ = ["HeadsSet", "load_heads_set", "to_unit"]


class HeadsSet:
    """A heads split in memory.

    ids: N instance ids; image: (N, 3, S, S) uint8 RGB; depth: (N, S, S) float32 GT depth in the input
    view (background at each image's max) or None; mask: (N, S, S) bool GT foreground or None;
    camera: the camera the split was rendered with (its attributes).
    """

    def __init__(
        self,
        ids: list[str],
        image: torch.Tensor,
        depth: torch.Tensor | None,
        mask: torch.Tensor | None,
        camera: Camera,
        path: Path,
    ):
        self.ids, self.image, self.depth, self.mask, self.camera, self.path = ids, image, depth, mask, camera, path

    @property
    def n(self) -> int:
        return len(self.ids)


def load_heads_set(
    path: str | Path,
    image_size: int,
    device: torch.device | str = "cpu",
    *,
    with_depth: bool = False,
    limit: int | None = None,
) -> HeadsSet:
    """Read the first ``limit`` (None: all) heads of an HDF5 heads split onto ``device``.

    path: a split of ``gan2shape make-heads`` (kind 'heads') with 'image' (N, 3, S, S) uint8 and, for
    ``with_depth``, 'depth' (N, S, S) and 'mask' (N, S, S). Raises ArtifactError naming the file when a
    dataset is missing, the images are not uint8 RGB of ``image_size`` or the split is empty.
    """
    path = Path(path)
    require = ("image", "depth", "mask") if with_depth else ("image",)
    with read_artifact(path, kind="heads", require=require) as art:
        shape = art.shape("image")
        if len(shape) != 4 or shape[1] != 3 or shape[2:] != (image_size, image_size):
            raise ArtifactError(
                f"{path}: dataset 'image' has shape {shape}, expected (N, 3, {image_size}, "
                f"{image_size}); set the section's image_size to the heads' size or rebuild them"
            )
        n = art.n if limit is None else min(art.n, int(limit))
        if n < 1:
            raise ArtifactError(f"{path} holds no heads (n={art.n}, limit={limit}): give a split with images")
        rows = slice(0, n)
        image = art.array("image", rows)
        if image.dtype != np.uint8:
            raise ArtifactError(
                f"{path}: dataset 'image' must be uint8 RGB, got {image.dtype}: rebuild it with gan2shape make-heads"
            )
        depth = mask = None
        if with_depth:
            depth = torch.from_numpy(np.ascontiguousarray(art.array("depth", rows), dtype=np.float32)).to(device)
            mask = torch.from_numpy(art.array("mask", rows) > 0).to(device)
        attrs = art.attrs
        if attrs.get("camera_fov_deg") is None:
            raise ArtifactError(
                f"{path} has no 'camera_fov_deg' attribute: rebuild the split with gan2shape make-heads"
            )
        extra = {
            k: float(attrs[f"camera_{k}"])
            for k in ("min_depth", "max_depth", "rot_center_depth")
            if attrs.get(f"camera_{k}") is not None
        }
        camera = Camera(image_size, fov_deg=float(attrs["camera_fov_deg"]), **extra)
        ids = list(art.ids[:n])
    return HeadsSet(ids, torch.from_numpy(image).to(device), depth, mask, camera, path)


def to_unit(image: torch.Tensor) -> torch.Tensor:
    """(N, 3, S, S) uint8 RGB -> float32 in [-1, 1] (x / 127.5 - 1), the networks' input range."""
    return image.float() / 127.5 - 1.0

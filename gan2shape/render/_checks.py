"""Argument validation for the renderer's public functions.

Every public function checks its tensors here so that a wrong shape fails at the boundary with a
message that names the argument, its expected layout and what was received.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

Dim = int | str | None


def check_tensor(
    name: str,
    x: object,
    layout: Sequence[Dim],
    dims: dict[str, int] | None = None,
    *,
    leading: bool = False,
    floating: bool = True,
) -> dict[str, int]:
    """Check that ``x`` is a tensor laid out as ``layout`` and return the bound dimension sizes.

    layout: one entry per axis: an int (exact size), a str (a named size: bound on first use,
        then every later use, here or in ``dims``, must agree) or None (any size).
    dims: sizes already bound by earlier arguments; updated in place and returned.
    leading: if True, ``layout`` describes the trailing axes and any number of leading axes
        (zero or more) may precede them; written ``(..., *layout)`` in messages.
    floating: if True, ``x`` must have a floating-point dtype.
    """
    dims = {} if dims is None else dims
    want = "(" + ", ".join((["..."] if leading else []) + [str("*" if d is None else d) for d in layout]) + ")"
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {want}, got {type(x).__name__}")
    if leading:
        if x.dim() < len(layout):
            raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")
        shape = tuple(x.shape[x.dim() - len(layout) :])
    else:
        if x.dim() != len(layout):
            raise ValueError(
                f"{name} must have shape {want} ({len(layout)} axes), got {tuple(x.shape)} ({x.dim()} axes)"
            )
        shape = tuple(x.shape)
    for axis, (spec, size) in enumerate(zip(layout, shape)):
        if spec is None:
            continue
        if isinstance(spec, int):
            if size != spec:
                raise ValueError(f"{name} must have shape {want}: axis {axis} should be {spec}, got {tuple(x.shape)}")
            continue
        if spec in dims and dims[spec] != size:
            raise ValueError(
                f"{name} must have shape {want} with {spec}={dims[spec]} (set by an earlier argument), "
                f"got {tuple(x.shape)}"
            )
        dims[spec] = size
    if floating and not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return dims


def check_image_size(name: str, height: int, width: int, image_size: int) -> None:
    """Check that a (H, W) map matches the camera's square image size S."""
    if height != image_size or width != image_size:
        raise ValueError(
            f"{name} is {height}x{width} but the camera's image_size is {image_size}: "
            f"use a Camera(image_size={height}) or resize {name} to {image_size}x{image_size}"
        )


def check_same_device(**tensors: torch.Tensor | None) -> None:
    """Check that all given tensors live on one device (None entries are skipped)."""
    present = {k: v for k, v in tensors.items() if v is not None}
    devices = {v.device for v in present.values()}
    if len(devices) > 1:
        listing = ", ".join(f"{k} on {v.device}" for k, v in present.items())
        raise ValueError(f"tensors must be on one device, got {listing}; move them with .to(device)")

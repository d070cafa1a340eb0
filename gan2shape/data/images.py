"""User images: a folder of PNG/JPG files as an HDF5 image artifact (kind 'images') for projection.

The artifact has the layout `gan2shape project` reads: dataset ``image`` (N, 3, S, S) uint8 RGB,
one row per file in name order, instance ids from the file names (``face 01.png`` -> ``face_01``).
Every file must be a square S x S image, S the GAN's resolution: the sizes of all files are checked
(from their headers) before any pixel is decoded, so a wrong file fails the run at once, by name.
Gray and RGBA files are converted to RGB (alpha is dropped).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from gan2shape.errors import ImageFolderError

__all__ = [
    "IMAGE_SUFFIXES",
    "KIND",
    "ImageFolderError",
    "list_images",
    "image_id",
    "load_image_folder",
    "import_images",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
KIND = "images"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def list_images(folder: str | Path) -> list[Path]:
    """The PNG/JPG files directly in ``folder`` (suffix case ignored, hidden files skipped), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageFolderError(f"{folder} is not a folder: give a folder of PNG/JPG images (workflow.images)")
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise ImageFolderError(
            f"{folder} holds no {'/'.join(IMAGE_SUFFIXES)} files: put the images to reconstruct there"
        )
    return files


def image_id(path: str | Path) -> str:
    """The instance id of an image file: its name without suffix, characters other than letters,
    digits, '.', '_' and '-' replaced by '_' (ids name export folders)."""
    return _UNSAFE.sub("_", Path(path).stem) or "_"


def load_image_folder(folder: str | Path, size: int, limit: int | None = None) -> tuple[list[str], np.ndarray]:
    """Read the images of ``folder`` (``list_images``) that must all be ``size`` x ``size`` pixels.

    limit: keep only the first ``limit`` files (all files are still size-checked).
    Returns (ids (N,) str, images (N, 3, size, size) uint8 RGB). Raises ImageFolderError naming the
    file for a wrong size, an unreadable file or two files that map to one id.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"load_image_folder: size must be an int >= 1, got {size!r}")
    if limit is not None and limit < 1:
        raise ValueError(f"load_image_folder: limit must be >= 1 or None, got {limit!r}")
    files = list_images(folder)
    seen: dict[str, Path] = {}
    for path in files:
        try:
            with Image.open(path) as im:
                width, height = im.size
        except (OSError, UnidentifiedImageError) as exc:
            raise ImageFolderError(f"{path} cannot be read as an image ({exc}): replace or remove it") from None
        if (width, height) != (size, size):
            raise ImageFolderError(
                f"{path} is {width}x{height} pixels, expected {size}x{size} (the GAN's resolution): crop/resize "
                f"it to {size}x{size}, or remove it from {Path(folder)}"
            )
        key = image_id(path)
        if key in seen:
            raise ImageFolderError(f"{seen[key]} and {path} both give the instance id {key!r}: rename one")
        seen[key] = path
    chosen = files if limit is None else files[:limit]
    images = np.empty((len(chosen), 3, size, size), np.uint8)
    for row, path in enumerate(chosen):
        try:
            with Image.open(path) as im:
                images[row] = np.asarray(im.convert("RGB"), np.uint8).transpose(2, 0, 1)
        except OSError as exc:  # a header that reads but pixels that do not (truncated file)
            raise ImageFolderError(f"{path} cannot be decoded ({exc}): replace or remove it") from None
    return [image_id(p) for p in chosen], images


def import_images(
    folder: str | Path, out_path: str | Path, size: int, limit: int | None = None, params_text: str | None = None
) -> Path:
    """Write the images of ``folder`` (``load_image_folder``) as an artifact of kind 'images' with
    dataset ``image`` (N, 3, size, size) uint8, atomically. Returns ``out_path``."""
    from gan2shape.artifacts import write_artifact

    ids, images = load_image_folder(folder, size, limit)
    return write_artifact(
        out_path,
        KIND,
        {"image": images},
        ids=ids,
        params_text=params_text,
        attrs={"source_folder": str(folder), "image_size": size},
    )

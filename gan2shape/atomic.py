"""Atomic file writes: a killed job never leaves a half-written file that looks complete.

Each file is written to ``<name>.tmp`` in the same folder and moved into place with ``os.replace``
(atomic on POSIX when source and target share a file system).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["write_atomic", "write_text_atomic", "write_png", "remove_stray_temporaries"]

log = logging.getLogger(__name__)


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then move ``tmp_path`` to ``path``; the temporary is removed on error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:  # on disk before the rename makes it visible
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_png(path: str | Path, image) -> Path:
    """Write a uint8 array (H, W) gray or (H, W, 3) RGB as a PNG, atomically."""
    import numpy as np
    from PIL import Image

    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(
            f"write_png({path}): need uint8 (H, W), (H, W, 3) or (H, W, 4), got {array.dtype} {array.shape}"
        )
    pil = Image.fromarray(np.ascontiguousarray(array))
    return write_atomic(path, lambda tmp: pil.save(tmp, format="PNG"))


def remove_stray_temporaries(path: str | Path) -> None:
    """Delete half-written copies of ``path`` left by killed writes: ``<name>.tmp`` (write_atomic) and
    ``.<name>.<pid>.tmp`` (stylegan2's save_checkpoint). They are never read, always rebuilt."""
    path = Path(path)
    for stray in [*path.parent.glob(f".{path.name}.*.tmp"), path.with_name(path.name + ".tmp")]:
        if stray.exists():
            log.info("removing %s, left by an interrupted write", stray)
            stray.unlink()

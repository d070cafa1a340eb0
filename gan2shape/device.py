"""Device selection for CLI commands (``--device auto|cpu|cuda|cuda:i``).

On a machine with several GPUs, ``auto`` and ``cuda`` (no index) pick one GPU per process so that
``snakemake --resources gpu=N`` runs N jobs on N different GPUs: the GPU named by the environment
variable ``GAN2SHAPE_GPU`` when set, otherwise the first GPU that no other gan2shape process holds.
A process holds GPU i by an exclusive ``fcntl.flock`` on ``<lock dir>/gpu<i>.lock``; the lock lives
as long as the process (the OS drops it on exit, crash or SIGKILL, so a killed job frees its GPU).
The lock folder is ``GAN2SHAPE_GPU_LOCK_DIR`` or a per-user folder under the system temp dir.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
from pathlib import Path
from typing import IO, TYPE_CHECKING

from gan2shape.errors import InputError

if TYPE_CHECKING:  # torch is imported where a device is built: claiming a GPU needs none
    import torch

__all__ = ["GPU_ENV", "LOCK_DIR_ENV", "default_lock_dir", "claim_gpu", "resolve_device"]

log = logging.getLogger(__name__)

GPU_ENV = "GAN2SHAPE_GPU"
LOCK_DIR_ENV = "GAN2SHAPE_GPU_LOCK_DIR"

# Open lock files of the GPUs this process holds, by lock folder and index. Module state on
# purpose: a flock lasts while its file stays open, and the claim must last the process's life.
_HELD: dict[tuple[str, int], IO[str]] = {}


def default_lock_dir() -> Path:
    """``GAN2SHAPE_GPU_LOCK_DIR`` or ``<tmp>/gan2shape-gpu-locks-<uid>`` (per user: another user's
    processes cannot block ours, and the folder is private)."""
    env = os.environ.get(LOCK_DIR_ENV)
    if env:
        return Path(env)
    return Path(tempfile.gettempdir()) / f"gan2shape-gpu-locks-{os.getuid()}"


def claim_gpu(n_gpus: int, lock_dir: str | Path | None = None) -> int | None:
    """Claim the first of ``n_gpus`` GPUs that no other process holds; None when all are held.

    The claim is an exclusive non-blocking flock on ``lock_dir/gpu<i>.lock`` (created, with this
    process's pid written in it for people who look), kept until the process ends. Calling it
    again in the same process returns the GPU already held. Needs no GPU: only files are touched.
    """
    if isinstance(n_gpus, bool) or not isinstance(n_gpus, int) or n_gpus < 1:
        raise ValueError(f"claim_gpu: n_gpus must be an int >= 1, got {n_gpus!r}")
    folder = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    for held_dir, index in _HELD:
        if held_dir == str(folder) and index < n_gpus:
            return index
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(
            f"cannot create the GPU lock folder {folder} ({exc}); set {LOCK_DIR_ENV} to a writable folder"
        ) from None
    for index in range(n_gpus):
        handle = open(folder / f"gpu{index}.lock", "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()  # held by another process
            continue
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        _HELD[(str(folder), index)] = handle
        return index
    return None


def _pick_gpu(spec: str) -> torch.device:
    """A CUDA device for ``auto``/``cuda`` without an index (see the module docstring)."""
    import torch

    count = torch.cuda.device_count()
    slot = os.environ.get(GPU_ENV)
    if slot:
        try:
            index = int(slot)
        except ValueError:
            raise InputError(f"{GPU_ENV}={slot!r} is not a GPU index; set it to 0..{count - 1} or unset it") from None
        if not 0 <= index < count:
            raise InputError(f"{GPU_ENV}={index}: this machine has {count} GPU(s) (0..{count - 1})")
        log.info("--device %s: GPU %d of %d (from %s)", spec, index, count, GPU_ENV)
        return torch.device(f"cuda:{index}")
    if count == 1:
        return torch.device("cuda:0")
    index = claim_gpu(count)
    if index is None:
        # more jobs than GPUs (e.g. --resources gpu larger than the GPU count): share, never wait
        index = os.getpid() % count
        log.warning(
            "--device %s: all %d GPUs are held by other gan2shape processes (locks in %s); sharing "
            "GPU %d. Give snakemake --resources gpu=N with N <= %d.",
            spec,
            count,
            default_lock_dir(),
            index,
            count,
        )
    else:
        log.info(
            "--device %s: claimed GPU %d of %d (lock %s)", spec, index, count, default_lock_dir() / f"gpu{index}.lock"
        )
    return torch.device(f"cuda:{index}")


def resolve_device(spec: str = "auto") -> torch.device:
    """Turn a user's device string into a torch.device, failing early with a clear message.

    ``auto``: CUDA when available (one GPU per process, see the module docstring), else the CPU.
    ``cuda``: the same GPU choice, failing when CUDA is missing. ``cuda:N``: exactly GPU N.
    """
    import torch

    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return _pick_gpu(spec) if torch.cuda.is_available() else torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"--device {spec}: CUDA is not available on this machine; use --device cpu or auto")
        try:
            dev = torch.device(spec)
        except RuntimeError:
            raise InputError(f"--device {spec!r} is not understood; use cuda or cuda:N") from None
        if dev.index is None:
            return _pick_gpu(spec)
        if dev.index >= torch.cuda.device_count():
            raise InputError(f"--device {spec}: this machine has {torch.cuda.device_count()} GPU(s) (cuda:0..)")
        return dev
    raise InputError(f"--device {spec!r} is not understood; use auto, cpu, cuda or cuda:N")

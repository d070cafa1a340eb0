"""Device selection for CLI commands (``--device auto|cpu|cuda|cuda:i``)."""

from __future__ import annotations

import os

import torch

__all__ = ["resolve_device"]


def resolve_device(spec: str = "auto") -> torch.device:
    """Turn a user's device string into a torch.device, failing early with a clear message.

    ``auto`` picks CUDA when available: the GPU named by Snakemake's job slot
    (``GAN2SHAPE_GPU``, set by the workflow) or else ``cuda:0``; otherwise the CPU.
    """
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        slot = os.environ.get("GAN2SHAPE_GPU")
        return torch.device(f"cuda:{int(slot) % torch.cuda.device_count()}" if slot else "cuda:0")
    if spec == "cpu":
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"--device {spec}: CUDA is not available on this machine; use --device cpu or auto")
        dev = torch.device(spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"--device {spec}: this machine has {torch.cuda.device_count()} GPU(s) (cuda:0..)"
            )
        return dev
    raise ValueError(f"--device {spec!r} is not understood; use auto, cpu, cuda or cuda:N")
